"""A trained model with its codecs: strings in, strings out. ``load_model(DIR)`` rebuilds one.

    >>> from minis2s import load_model
    >>> m = load_model("runs/dates/best")
    >>> m.translate(["feb 10, 1924", "10 march 2001"])
    ['1924-02-10', '2001-03-10']

The caller never sees batching: results come back in the order of the inputs. A source symbol
the model never saw in training becomes <unk>; ``translate`` reports it through ``on_unknown``
(``minis2s predict`` warns on stderr) and still answers every input.
"""
from __future__ import annotations

from minis2s.checkpoint import (
    CheckpointError,
    load_weights,
    read_model_files,
    read_model_meta,
    read_model_weights,
)
from minis2s.data import Vocab
from minis2s.data.codec import TextCodec
from minis2s.decode import decode_batched
from minis2s.models.config import ModelConfig, build_model, parameter_shapes

# Model folders written before tokenizers were saved (the G2P models) read letters and phonemes.
LEGACY_TOKENIZERS = {"g2p": {"src": {"kind": "char", "lowercase": True}, "trg": {"kind": "space", "lowercase": False}}}


def codecs_from_meta(meta: dict, files: dict[str, bytes]) -> tuple[TextCodec, TextCodec]:
    """The (source, target) codecs a model folder's model.json describes."""
    tokenizers = meta.get("tokenizers") or LEGACY_TOKENIZERS.get(meta.get("task"))
    if tokenizers is None:
        raise KeyError("model.json has no 'tokenizers'")
    return tuple(TextCodec.from_json({"tokenizer": tokenizers[side], "vocab": meta["vocab"][side]}, files)
                 for side in ("src", "trg"))


class Translator:
    """``model`` (a Seq2Seq or AttentionSeq2Seq) with the codecs of its task."""

    def __init__(self, model, config: ModelConfig, src: TextCodec, trg: TextCodec, meta: dict | None = None):
        self.model = model.eval()
        self.config, self.src, self.trg = config, src, trg
        self.meta = meta or {}

    def encode_sources(self, strings, on_unknown=None) -> list[list[int]]:
        """Strings -> source ids (reversed if the model reads them so). ``on_unknown(i, tokens)``
        is called for each input i with symbols outside the vocabulary (they become <unk>)."""
        if isinstance(strings, str):
            raise TypeError("strings must be a list of str, not one str (wrap it in a list)")
        out = []
        for i, s in enumerate(list(strings)):
            if not isinstance(s, str):
                raise TypeError(f"strings[{i}] must be a str, got {type(s).__name__}")
            ids, unknown = self.src.encode(s)
            if unknown and on_unknown is not None:
                on_unknown(i, unknown)
            if not ids:  # an empty line still gets an answer: the model reads one <unk>
                ids = [Vocab.unk_id]
            out.append(ids[::-1] if self.config.reverse_source else ids)
        return out

    def translate(self, strings, *, beam: int = 1, nbest: int | None = None, alpha: float = 1.0,
                  batch_size: int = 256, max_len: int | None = None, on_unknown=None, map_batches=None):
        """strings -> their translations, in order: a str each, or with ``nbest`` a list of
        ``nbest`` (str, score) pairs each (score: log-probability / length**alpha).
        ``max_len``: the most target tokens (default: 2 × the batch's longest source + 10);
        ``map_batches``: how the batches are decoded (``decode.decode_batched``)."""
        ids = self.encode_sources(strings, on_unknown)
        hyps = decode_batched(self.model, ids, sos_id=Vocab.sos_id, eos_id=Vocab.eos_id, beam=beam, nbest=nbest or 1,
                              alpha=alpha, batch_size=batch_size, max_len=max_len, map_batches=map_batches)
        if nbest is None:
            return [self.trg.decode(h[0][0]) for h in hyps]
        return [[(self.trg.decode(ids), score) for ids, score in h] for h in hyps]

    __call__ = translate


def load_model(folder) -> Translator:
    """Any trained model folder (RUN/best, RUN/last, an exported copy) -> a ``Translator``:
    architecture, weights, tokenizers and vocabularies, all from the folder itself."""
    meta = read_model_meta(folder)
    try:
        config = ModelConfig.from_dict(meta["model"])
        src, trg = codecs_from_meta(meta, read_model_files(folder, meta))
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise CheckpointError(f"{folder}: model.json is incomplete or invalid ({msg})") from e
    # model.json's sizes against the weights' header before the model is allocated
    try:
        weights = read_model_weights(folder, meta, expect=parameter_shapes(config, len(src), len(trg)))
    except CheckpointError as e:
        raise CheckpointError(f"{e} (the shapes model.json's sizes give)") from e
    model = build_model(config, len(src), len(trg))
    load_weights(model, weights, folder)
    return Translator(model, config, src, trg, meta)
