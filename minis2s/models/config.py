"""ModelConfig and ``build_model``: the one way to build a model from its settings.

Two architectures (``arch``), trained, evaluated and decoded by the same code:

* ``"seq2seq"``, the seed's: the encoder's last state is the decoder's only context. Sources go
  in reversed (``reverse_source``, its default for this architecture): the first symbols —
  which decide the first outputs — are then the most recently read (Sutskever et al. 2014).
* ``"attention"`` (minis2s/models/attention.py): a bidirectional LSTM encoder of ``hidden // 2``
  per direction, a bridge to the decoder's initial state, and a decoder of ``hidden`` that
  attends over the source at every step with the score ``attention`` ("bahdanau", "general"
  or "dot"), feeding its attentional state to the next step when ``input_feeding``.

The defaults are those of the shipped seq2seq G2P model (2 layers of 384, embeddings of 128).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from minis2s.models.attention import AttentionDecoder, AttentionEncoder, AttentionSeq2Seq
from minis2s.models.seq2seq import Decoder, Encoder, Seq2Seq
from minis2s.settings import check_settings, setting, settings_from_dict

ARCHS = ("seq2seq", "attention")
DTYPES = ("float32", "float64")


@dataclass
class ModelConfig:
    arch: str = setting("seq2seq", "seq2seq: the seed's (the last encoder state is the context); attention: "
                        "bidirectional encoder of hidden/2 per direction, bridge, attentional decoder", choices=ARCHS)
    hidden: int = setting(384, "hidden units per layer (the attention encoder: hidden/2 per direction)", low=1)
    layers: int = setting(2, "layers of the encoder and of the decoder", low=1)
    embedding: int = setting(128, "embedding size (source and target)", low=1)
    dropout: float = setting(0.2, "dropout on embeddings and between layers", low=0.0, high=0.99)
    cell: str = setting("lstm", "the recurrent cell (arch seq2seq; attention is built of LSTMs)",
                        choices=("lstm", "gru", "rnn"))
    reverse_source: bool | None = setting(None, "feed the source reversed (None: yes for seq2seq, no for attention)")
    attention: str = setting("general", "the attention score (arch attention)", choices=("bahdanau", "general", "dot"))
    input_feeding: bool = setting(True, "feed the attentional state into the next step (arch attention)")
    dtype: str = setting("float32", "the weights' floating-point type", choices=DTYPES)

    def __post_init__(self):
        check_settings(self)
        if self.reverse_source is None:  # resolved once, so model.json says what the model reads
            self.reverse_source = self.arch == "seq2seq"
        if self.arch == "attention":
            if self.cell != "lstm":
                raise ValueError(f"the attention architecture is built of LSTMs: cell must be 'lstm', got {self.cell!r}")
            if self.hidden % 2:
                raise ValueError(f"the attention architecture needs an even hidden size (hidden // 2 per "
                                 f"encoder direction), got {self.hidden}")

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "model settings") -> ModelConfig:
        return settings_from_dict(cls, d, where=where)

    def to_dict(self) -> dict:
        return asdict(self)


def build_model(cfg: ModelConfig, src_vocab_size: int, trg_vocab_size: int):
    """A Seq2Seq (arch "seq2seq") or an AttentionSeq2Seq (arch "attention") for ``cfg``, with
    minis2s's generator's current state initialising the weights (``minis2s.manual_seed``)."""
    dtype = np.dtype(cfg.dtype)
    if cfg.arch == "attention":
        enc = AttentionEncoder(src_vocab_size, cfg.hidden // 2, cfg.embedding, cfg.layers, dropout=cfg.dropout,
                               dtype=dtype)
        dec = AttentionDecoder(trg_vocab_size, cfg.hidden, cfg.embedding, cfg.layers, cfg.hidden,
                               attention=cfg.attention, input_feeding=cfg.input_feeding, dropout=cfg.dropout,
                               dtype=dtype)
        return AttentionSeq2Seq(enc, dec, "cpu")
    enc = Encoder(src_vocab_size, cfg.hidden, cfg.embedding, cfg.layers, dropout=cfg.dropout, cell=cfg.cell,
                  dtype=dtype)
    dec = Decoder(trg_vocab_size, cfg.hidden, cfg.embedding, cfg.layers, dropout=cfg.dropout, cell=cfg.cell,
                  dtype=dtype)
    return Seq2Seq(enc, dec, "cpu")
