"""Synthetic tasks for a first run: reverse or sort a sequence of digits.

``python -m minis2s demo reverse`` trains an LSTM ``Seq2Seq`` on random digit strings of length
3-10 and reports exact-sequence accuracy on held-out strings (never seen in training). The
task is a preset of ``Seq2SeqTask``: generated pairs, one character per token.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from minis2s.models.config import ModelConfig
from minis2s.settings import check_settings, setting
from minis2s.task import DataConfig, Seq2SeqTask, evaluate_translator

DIGITS = list("0123456789")
TRANSFORMS = {"reverse": lambda s: s[::-1], "sort": lambda s: "".join(sorted(s))}
# The demo's training defaults where they differ from TrainConfig's.
DEMO_TRAIN_DEFAULTS = {"epochs": 15, "batch_size": 64, "patience": 3, "target": 1.0}


@dataclass
class DemoConfig:
    task: str = setting("reverse", "what the model learns to do to a digit string", choices=tuple(TRANSFORMS))
    min_len: int = setting(3, "shortest string", low=1)
    max_len: int = setting(10, "longest string", low=1)
    train_size: int = setting(40000, "training strings", low=1)
    dev_size: int = setting(500, "dev strings", low=1)
    test_size: int = setting(2000, "held-out test strings", low=1)
    hidden: int = setting(128, "hidden units", low=1)
    embedding: int = setting(32, "embedding size", low=1)
    layers: int = setting(1, "layers", low=1)
    seed: int = setting(0, "seeds the strings", low=0)

    def __post_init__(self):
        check_settings(self)
        if self.min_len > self.max_len:
            raise ValueError(f"min_len ({self.min_len}) must be <= max_len ({self.max_len})")


def digit_strings(cfg: DemoConfig) -> dict[str, list[str]]:
    """{"test", "dev", "train"}: random digit strings; held-out strings never occur in training."""
    rng = np.random.default_rng(cfg.seed)
    seen, splits = set(), {}
    for name, n in (("test", cfg.test_size), ("dev", cfg.dev_size), ("train", cfg.train_size)):
        seqs = []
        while len(seqs) < n:
            s = "".join(rng.choice(DIGITS, rng.integers(cfg.min_len, cfg.max_len + 1)))
            if name == "train" and s in seen:
                continue
            seen.add(s)
            seqs.append(s)
        splits[name] = seqs
    return splits


class DigitTask(Seq2SeqTask):
    """The digit demo as a Seq2SeqTask: metric exact match on the dev strings."""

    def __init__(self, cfg: DemoConfig):
        if not isinstance(cfg, DemoConfig):
            raise TypeError(f"cfg must be a DemoConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.splits = digit_strings(cfg)
        pairs = {name: [(s, TRANSFORMS[cfg.task](s)) for s in seqs] for name, seqs in self.splits.items()}
        self.split_pairs = pairs
        model = ModelConfig(hidden=cfg.hidden, embedding=cfg.embedding, layers=cfg.layers, dropout=0.0,
                            reverse_source=False)
        super().__init__(pairs["train"], pairs["dev"], model=model, data=DataConfig(tokens="char"),
                         name=f"demo-{cfg.task}", tokens={"src": DIGITS, "trg": DIGITS}, eval_batch=500)

    def data_settings(self) -> dict:
        return {**super().data_settings(), "demo": asdict(self.cfg)}

    def predict(self, model, strings) -> list[str]:
        return self.translator(model).translate(strings, batch_size=500, max_len=self.cfg.max_len + 2)

    def accuracy(self, model, split: str) -> float:
        """Exact-sequence accuracy on a split ("train", "dev", "test")."""
        return evaluate_translator(self.translator(model), self.split_pairs[split], batch_size=500)["exact"]
