"""Seq2SeqTask: any sequence task — training and dev pairs, codecs, a model config, a metric.

    task = Seq2SeqTask("data/dates-train.tsv", "data/dates-dev.tsv",
                       data=DataConfig(tokens="char"), model=ModelConfig(hidden=128, layers=1))
    model = task.build_model()
    train(task, model, TrainConfig(epochs=5), "runs/dates")     # minis2s/training

What the training loop asks of a task (minis2s/training/trainer.py) it offers: bucketed
batches, the dev metrics, and its description (saved in config.json and in every model folder,
so that ``load_model`` rebuilds the codecs and the model from the folder alone). G2P
(minis2s/g2p.py) and the digit demos (minis2s/demo.py) are presets of it.

Evaluation groups the pairs by source: a source that occurs several times (a word with two
pronunciations) is one example whose references are all its targets, the closest counting.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from minis2s.data import Vocab, make_batches, read_pairs
from minis2s.data.codec import TextCodec
from minis2s.data.tokenizers import TOKENIZER_KINDS
from minis2s.metrics import LOWER_IS_BETTER, METRICS, sequence_metrics
from minis2s.models.config import ModelConfig, build_model
from minis2s.settings import check_settings, setting, settings_from_dict
from minis2s.translator import Translator


@dataclass
class DataConfig:
    """How text becomes ids: the settings that shape the data (saved with the run)."""

    tokens: str = setting("char", "how both sides are split: char, space (words), or bpe/unigram subwords "
                          "(sentencepiece)", choices=TOKENIZER_KINDS)
    src_tokens: str | None = setting(None, "the source's tokens, if not --tokens", choices=TOKENIZER_KINDS)
    trg_tokens: str | None = setting(None, "the target's tokens, if not --tokens", choices=TOKENIZER_KINDS)
    vocab_size: int = setting(1000, "subword vocabulary size (bpe, unigram), per side unless shared", low=8)
    shared_vocab: bool = setting(False, "one vocabulary (and one subword model) for both sides")
    min_freq: int = setting(1, "(char, space) symbols seen fewer times in training become <unk>", low=1)
    lowercase: bool = setting(False, "lowercase the source")
    metric: str = setting("exact", "the dev metric that picks the best model", choices=METRICS)
    train_limit: int | None = setting(None, "use only the first N training pairs (quick runs)", low=1)

    def __post_init__(self):
        check_settings(self)
        if self.shared_vocab and self.side_tokens("src") != self.side_tokens("trg"):
            raise ValueError(f"shared_vocab needs one kind of tokens on both sides, got source "
                             f"{self.side_tokens('src')!r} and target {self.side_tokens('trg')!r}")

    def side_tokens(self, side: str) -> str:
        return {"src": self.src_tokens, "trg": self.trg_tokens}[side] or self.tokens

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "data settings") -> DataConfig:
        return settings_from_dict(cls, d, where=where)


def pairs_digest(pairs) -> str:
    """sha256 of the pairs' text: a resumed run must train on exactly the data it started on."""
    h = hashlib.sha256()
    for s, t in pairs:
        h.update(s.encode() + b"\t" + t.encode() + b"\n")
    return h.hexdigest()


class Seq2SeqTask:
    """``train``/``dev``: a TSV or JSONL path, a list of (source, target) pairs, or ``Pairs``
    (minis2s/data/pairs.py); ``dev`` may be None (then no evaluation: ``evaluate`` needs pairs).
    ``tokens``: fixed vocabularies {"src": [...], "trg": [...]} instead of learnt ones.
    Codecs are learnt from the training side only."""

    pad_id = Vocab.pad_id

    def __init__(self, train, dev=None, *, model: ModelConfig | None = None, data: DataConfig | None = None,
                 name: str = "seq2seq", tokens: dict | None = None, eval_batch: int = 256, log=None):
        self.model_config = model or ModelConfig()
        self.data_config = data or DataConfig()
        self.name, self.eval_batch = name, eval_batch
        if not isinstance(self.model_config, ModelConfig):
            raise TypeError(f"model must be a ModelConfig, got {type(self.model_config).__name__}")
        if not isinstance(self.data_config, DataConfig):
            raise TypeError(f"data must be a DataConfig, got {type(self.data_config).__name__}")
        d = self.data_config
        self.train_pairs = read_pairs(train, name="train")
        if d.train_limit is not None and d.train_limit < len(self.train_pairs):
            self.train_pairs = self.train_pairs.head(d.train_limit)
        self.dev_pairs = None if dev is None else read_pairs(dev, name="dev")
        self.src, self.trg = self._fit_codecs(tokens or {})
        self.train_src, self.train_trg, self.train_unknown = self._encode_training()
        if self.train_unknown and log is not None:
            log(f"{self.train_unknown} training tokens are <unk> (seen fewer than min_freq={d.min_freq} times)")

    def _fit_codecs(self, tokens: dict) -> tuple[TextCodec, TextCodec]:
        d, p = self.data_config, self.train_pairs
        if d.shared_vocab:
            if d.lowercase:
                raise ValueError("lowercase (the source only) cannot be combined with shared_vocab")
            kind = d.side_tokens("src")
            codec = TextCodec.fit(list(p.src) + list(p.trg), kind, vocab_size=d.vocab_size, min_freq=d.min_freq,
                                  prefix="shared", tokens=tokens.get("src"))
            return codec, codec
        src = TextCodec.fit(p.src, d.side_tokens("src"), lowercase=d.lowercase, vocab_size=d.vocab_size,
                            min_freq=d.min_freq, prefix="src", tokens=tokens.get("src"))
        trg = TextCodec.fit(p.trg, d.side_tokens("trg"), vocab_size=d.vocab_size, min_freq=d.min_freq,
                            prefix="trg", tokens=tokens.get("trg"))
        return src, trg

    def _encode_training(self):
        reverse = self.model_config.reverse_source
        src, trg, unknown = [], [], 0
        for s, t in self.train_pairs:
            s_ids, s_unk = self.src.encode(s)
            t_ids, t_unk = self.trg.encode(t)
            unknown += len(s_unk) + len(t_unk)
            src.append(s_ids[::-1] if reverse else s_ids)
            trg.append(t_ids)
        return src, trg, unknown

    # ---- what the training loop uses ----------------------------------------------------
    def build_model(self):
        """The model of ``model_config`` for these vocabularies (weights from minis2s's
        generator: call ``minis2s.manual_seed`` first for a given start)."""
        return build_model(self.model_config, len(self.src), len(self.trg))

    def train_batches(self, rng, batch_size: int):
        return make_batches(self.train_src, self.train_trg, batch_size, rng=rng)

    @property
    def metric(self) -> str:
        return self.data_config.metric

    @property
    def lower_is_better(self) -> bool:
        return LOWER_IS_BETTER[self.metric]

    def describe(self) -> dict:
        """What model.json and config.json hold of the task: enough to rebuild the codecs and
        the model before its weights are loaded (the subword models are ``files()``)."""
        return {"task": self.name, "model": self.model_config.to_dict(),
                "vocab": {"src": self.src.vocab.to_json(), "trg": self.trg.vocab.to_json()},
                "tokenizers": {"src": self.src.tokenizer.to_json(), "trg": self.trg.tokenizer.to_json()},
                "metric": self.metric}

    def files(self) -> dict[str, bytes]:
        return {**self.src.files(), **self.trg.files()}

    def data_settings(self) -> dict:
        """What shaped the data: its settings and a digest of the pairs (the file names are
        recorded as ``*_file`` for the reader, and not compared on resume)."""
        out = {"settings": asdict(self.data_config), "train_pairs": len(self.train_pairs),
               "train_digest": pairs_digest(self.train_pairs), "train_file": self.train_pairs.origin}
        if self.dev_pairs is not None:
            out.update(dev_pairs=len(self.dev_pairs), dev_digest=pairs_digest(self.dev_pairs),
                       dev_file=self.dev_pairs.origin)
        return out

    def translator(self, model) -> Translator:
        return Translator(model, self.model_config, self.src, self.trg, self.describe())

    def evaluate(self, model, pairs=None, *, beam: int = 1, alpha: float = 1.0, map_batches=None) -> dict:
        """Every metric of ``model`` on ``pairs`` (default: the dev pairs), greedy unless
        ``beam`` > 1; sources that repeat are one example with several references.
        ``map_batches``: how the decoding batches are run (``decode.decode_batched``)."""
        pairs = self.dev_pairs if pairs is None else read_pairs(pairs, name="pairs")
        if pairs is None:
            raise ValueError("this task has no dev pairs: give pairs to evaluate on")
        return evaluate_translator(self.translator(model), pairs, beam=beam, alpha=alpha,
                                   batch_size=self.eval_batch, map_batches=map_batches)


def group_references(pairs) -> tuple[list[str], list[list[str]]]:
    """(distinct sources in first-seen order, the targets of each)."""
    refs: dict[str, list[str]] = {}
    for s, t in pairs:
        refs.setdefault(s, []).append(t)
    return list(refs), list(refs.values())


def evaluate_translator(translator: Translator, pairs, *, beam: int = 1, alpha: float = 1.0,
                        batch_size: int = 256, on_unknown=None, map_batches=None) -> dict:
    """The metrics (minis2s/metrics.py: exact, wer, cer, bleu, chrf) of a translator on pairs."""
    sources, references = group_references(read_pairs(pairs, name="pairs"))
    hyps = translator.translate(sources, beam=beam, alpha=alpha, batch_size=batch_size, on_unknown=on_unknown,
                                map_batches=map_batches)
    return sequence_metrics(hyps, references)

