"""Synthetic tasks for a first run: reverse or sort a sequence of digits.

``python -m minis2s demo reverse`` trains the seed's Seq2Seq on random digit strings of length
3-10 and reports exact-sequence accuracy on held-out strings (never seen in training).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from minis2s.data import Vocab, make_batches
from minis2s.decode import greedy_decode
from minis2s.models import Decoder, Encoder, Seq2Seq

DIGITS = list("0123456789")
TRANSFORMS = {"reverse": lambda s: s[::-1], "sort": sorted}


@dataclass
class DemoConfig:
    task: str = "reverse"
    min_len: int = 3
    max_len: int = 10
    train_size: int = 40000
    dev_size: int = 500
    test_size: int = 2000
    hidden: int = 128
    embedding: int = 32
    layers: int = 1
    seed: int = 0


class DigitTask:
    metric = "error"  # 1 - exact-sequence accuracy
    pad_id = Vocab.pad_id

    def __init__(self, cfg: DemoConfig):
        if cfg.task not in TRANSFORMS:
            raise ValueError(f"task must be one of {sorted(TRANSFORMS)}, got {cfg.task!r}")
        self.cfg, self.vocab = cfg, Vocab(DIGITS)
        rng = np.random.default_rng(cfg.seed)
        seen, splits = set(), {}
        for name, n in (("test", cfg.test_size), ("dev", cfg.dev_size), ("train", cfg.train_size)):
            seqs = []
            while len(seqs) < n:  # held-out strings never occur in training
                s = "".join(rng.choice(DIGITS, rng.integers(cfg.min_len, cfg.max_len + 1)))
                if name == "train" and s in seen:
                    continue
                seen.add(s)
                seqs.append(s)
            splits[name] = seqs
        self.splits = splits
        self.train_src = [self.vocab.encode(list(s)) for s in splits["train"]]
        self.train_trg = [self.vocab.encode(list(TRANSFORMS[cfg.task](s))) for s in splits["train"]]

    def build_model(self, dtype=np.float32):
        c, V = self.cfg, len(self.vocab)
        return Seq2Seq(Encoder(V, c.hidden, c.embedding, c.layers, dtype=dtype),
                       Decoder(V, c.hidden, c.embedding, c.layers, dtype=dtype), "cpu")

    def train_batches(self, rng, batch_size):
        return make_batches(self.train_src, self.train_trg, batch_size, rng=rng)

    def describe(self):
        return {"task": f"demo-{self.cfg.task}", "demo": asdict(self.cfg), "vocab": self.vocab.to_json()}

    def predict(self, model, strings):
        src = [self.vocab.encode(list(s)) for s in strings]
        out = [None] * len(strings)
        for b in make_batches(src, None, 500):
            hyps = greedy_decode(model, b.src, b.src_lengths, max_len=self.cfg.max_len + 2,
                                 sos_id=Vocab.sos_id, eos_id=Vocab.eos_id)
            for j, i in enumerate(b.index):
                out[i] = "".join(self.vocab.decode(hyps[j]))
        return out

    def accuracy(self, model, split):
        strings = self.splits[split]
        preds = self.predict(model.eval(), strings)
        return float(np.mean([p == "".join(TRANSFORMS[self.cfg.task](s)) for p, s in zip(preds, strings)]))

    def evaluate(self, model):
        return {"error": 1.0 - self.accuracy(model, "dev")}
