"""ModelConfig and ``build_model``: the one way to build a model from its settings.

Two architectures (``arch``), trained, evaluated and decoded by the same code:

* ``"seq2seq"``, the LSTM encoder-decoder: the encoder's last state is the decoder's only context. Sources go
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
# Bounds far above any model this library trains, so that a damaged model.json is refused
# before its sizes reach an allocation (the shapes are then checked against the weights' header).
MAX_SIZE, MAX_LAYERS = 1 << 16, 256


@dataclass
class ModelConfig:
    arch: str = setting("seq2seq", "seq2seq: LSTM encoder-decoder (the last encoder state is the context); attention: "
                        "bidirectional encoder of hidden/2 per direction, bridge, attentional decoder", choices=ARCHS)
    hidden: int = setting(384, "hidden units per layer (the attention encoder: hidden/2 per direction)", low=1,
                          high=MAX_SIZE)
    layers: int = setting(2, "layers of the encoder and of the decoder", low=1, high=MAX_LAYERS)
    embedding: int = setting(128, "embedding size (source and target)", low=1, high=MAX_SIZE)
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


def build_model(cfg: ModelConfig, src_vocab_size: int, trg_vocab_size: int, *, rng=None):
    """A Seq2Seq (arch "seq2seq") or an AttentionSeq2Seq (arch "attention") for ``cfg``, its
    weights drawn from ``rng`` (default: minis2s's generator's current state, see
    ``minis2s.manual_seed``)."""
    dtype = np.dtype(cfg.dtype)
    if cfg.arch == "attention":
        enc = AttentionEncoder(src_vocab_size, cfg.hidden // 2, cfg.embedding, cfg.layers, dropout=cfg.dropout,
                               dtype=dtype, rng=rng)
        dec = AttentionDecoder(trg_vocab_size, cfg.hidden, cfg.embedding, cfg.layers, cfg.hidden,
                               attention=cfg.attention, input_feeding=cfg.input_feeding, dropout=cfg.dropout,
                               dtype=dtype, rng=rng)
        return AttentionSeq2Seq(enc, dec, "cpu", rng=rng)
    enc = Encoder(src_vocab_size, cfg.hidden, cfg.embedding, cfg.layers, dropout=cfg.dropout, cell=cfg.cell,
                  dtype=dtype, rng=rng)
    dec = Decoder(trg_vocab_size, cfg.hidden, cfg.embedding, cfg.layers, dropout=cfg.dropout, cell=cfg.cell,
                  dtype=dtype, rng=rng)
    return Seq2Seq(enc, dec, "cpu")


class _ShapesOnly:
    """A stand-in generator whose draws allocate nothing: each is a read-only zero-stride view
    (``np.broadcast_to``) of the requested shape, so a model built from it has the real
    parameter names and shapes at no memory cost."""

    class _Draw:
        def __init__(self, shape):
            self.shape = tuple(shape)

        def astype(self, dtype):
            return np.broadcast_to(np.zeros((), dtype), self.shape)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._Draw(size)

    def standard_normal(self, size=None):
        return self._Draw(size)


def parameter_shapes(cfg: ModelConfig, src_vocab_size: int, trg_vocab_size: int) -> dict[str, tuple]:
    """{state-dict key: shape} of ``build_model(cfg, ...)``, computed by building the model on
    ``_ShapesOnly`` draws: nothing of the model's size is allocated, so a model folder's sizes
    can be checked against its weight file's header before the model is built."""
    model = build_model(cfg, src_vocab_size, trg_vocab_size, rng=_ShapesOnly())
    return {name: tuple(p.shape) for name, p in model.named_parameters()}
