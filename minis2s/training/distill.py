"""Token-level ensemble distillation: the teachers' next-token distributions as soft targets.

Sun et al. 2019 (arXiv 1904.03446): the student is trained on

    q_t = (1 - λ) onehot(y_t) + λ p_teacher(· | y_<t, x),   p_teacher = (1/M) Σ_m p_m

where p_m is teacher m's softmax under teacher forcing along the *reference* prefix y_<t (the
arithmetic mean, as minis2s/models/ensemble.py decodes), optionally at a temperature T:
p_m = softmax(z_m / T) for teacher m's logits z_m (Hinton et al. 2015; T = 1 by default: a
teacher's distribution as it decodes; T > 1 spreads more of its mass over the other tokens). Sequence-level distillation (train on
the teachers' decoded outputs) teaches little when the teachers reproduce the training
references; their distributions still say which other tokens were plausible.

``TeacherTargets`` computes p_teacher once for every training pair of the task (no backward),
stores it ragged, and gives ``for_batch(batch)`` the rows aligned with ``batch.trg[1:]`` — what
the loss scores. Each teacher reads the text through its own codecs (a model folder's source
order: the seq2seq G2P model reads the letters reversed, the attention one does not); its
target vocabulary must be the student's, since p_teacher is compared with the student's softmax
id by id. Legend: P pairs, N scored tokens in all (each target token and <eos>), V vocabulary.
"""
from __future__ import annotations

import os

import numpy as np

from minis2s import random as mrandom
from minis2s.backend import to_numpy
from minis2s.data import make_batches
from minis2s.nn import no_grad
from minis2s.ops import log_softmax
from minis2s.validate import check_positive_real


def teacher_folders(distill_from: str) -> list[str]:
    """``distill_from`` -> its model folders ("a,b": an ensemble of two)."""
    return [part.strip() for part in distill_from.split(",") if part.strip()]


def load_teacher(teacher):
    """A model folder, or an already loaded ``Translator``, -> (Translator, its name for messages)."""
    from minis2s.translator import Translator, load_model

    if isinstance(teacher, Translator):
        return teacher, f"Translator({type(teacher.model).__name__})"
    if not isinstance(teacher, (str, os.PathLike)):
        raise TypeError(f"teachers: each must be a model folder or a Translator, got {type(teacher).__name__}")
    state = mrandom.get_rng_state()  # load_model builds on minis2s's generator: leave it where the caller had it
    try:
        return load_model(teacher), os.fspath(teacher)
    finally:
        mrandom.set_rng_state(state)


class TeacherTargets:
    """The teachers' mean next-token distribution for every target step of ``task.train_pairs``.

    ``teachers``: model folders or ``Translator``s (one or more: an ensemble). ``log``: gets one
    line saying how sharp the teachers are on the training words. ``map_batches``: how the
    teacher batches are run (several ranks: spread round them, as dev decoding is).

    Stored ragged, float32 (143 MB for CMUdict's 830k scored tokens x 43 symbols): pair i's
    rows are ``probs[offsets[i]:offsets[i + 1]]``, one per position of trg[1:] that is not
    padding."""

    def __init__(self, teachers, task, *, batch_size: int = 256, log=None, map_batches=None,
                 temperature: float = 1.0):
        temperature = check_positive_real("temperature", temperature)
        if isinstance(teachers, (str, os.PathLike)) or not hasattr(teachers, "__iter__"):
            teachers = [teachers]
        loaded = [load_teacher(t) for t in teachers]
        if not loaded:
            raise ValueError("teachers is empty: distillation needs at least one teacher model")
        for translator, name in loaded:
            if translator.trg.vocab != task.trg.vocab:
                raise ValueError(f"teacher {name}: its target vocabulary ({len(translator.trg.vocab)} symbols) is "
                                 f"not the student's ({len(task.trg.vocab)}): its distributions cannot be targets")
        self.names, self.pad_id, self.temperature = [name for _, name in loaded], task.pad_id, temperature
        lengths = np.array([len(t) + 1 for t in task.train_trg], dtype=np.int64)  # (P,) targets and <eos>
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # (P + 1,)
        self.lengths = lengths
        self.probs = np.zeros((int(self.offsets[-1]), len(task.trg.vocab)), dtype=np.float32)  # (N, V)
        sources = list(task.train_pairs.src)
        for translator, _ in loaded:  # one teacher at a time: each reads the sources its own way
            batches = make_batches(translator.encode_sources(sources), task.train_trg, batch_size)
            run = map_batches or (lambda fn, items: [fn(b) for b in items])
            for batch, p in zip(batches, run(_teacher_probs(translator.model, task.pad_id, temperature), batches)):
                self.probs[self.rows(batch)] += p / len(loaded)  # the arithmetic mean of the members
        self.sharpness = self._sharpness(task)
        if log is not None:
            log(f"distilling from {len(loaded)} teacher(s) ({', '.join(self.names)})"
                + (f" at temperature {self.temperature:g}" if self.temperature != 1 else "")
                + f" on {len(lengths):,} training "
                f"pairs, {len(self.probs):,} tokens: mean teacher probability of the reference token "
                f"{self.sharpness['p_reference']:.4f}, mean entropy {self.sharpness['entropy']:.4f} nats, "
                f"argmax = reference {100 * self.sharpness['argmax_is_reference']:.2f}%")

    def rows(self, batch) -> np.ndarray:
        """The storage rows of the batch's scored positions, in ``batch.trg[1:]``'s column-major
        order of non-pad entries (B columns, each its length)."""
        return np.concatenate([np.arange(o, o + n) for o, n in zip(self.offsets[batch.index], self.lengths[batch.index])])

    def for_batch(self, batch) -> np.ndarray:
        """(T-1, B, V) float32: p_teacher for every position of ``batch.trg[1:]`` (``batch.index``:
        positions in ``task.train_pairs``); pad positions repeat a column's last row (the loss
        ignores them)."""
        T1 = batch.trg.shape[0] - 1
        lengths = self.lengths[batch.index]  # (B,)
        if not np.array_equal((batch.trg[1:] != self.pad_id).sum(axis=0), lengths):
            raise ValueError("batch: its targets are not the training pairs that batch.index names (their lengths "
                             "differ): teacher targets are looked up by position in task.train_pairs")
        steps = np.minimum(np.arange(T1)[:, None], lengths[None, :] - 1)  # (T-1, B)
        return self.probs[self.offsets[batch.index][None, :] + steps]  # (T-1, B, V)

    def _sharpness(self, task) -> dict:
        """How much the teachers say beyond the references: p(reference) and entropy, per token."""
        refs = np.concatenate([t + [task.trg.vocab.eos_id] for t in task.train_trg])  # (N,)
        p = self.probs.astype(np.float64)  # (N, V)
        entropy = -(p * np.log(np.maximum(p, 1e-30))).sum(axis=1)
        return {"p_reference": float(p[np.arange(len(refs)), refs].mean()), "entropy": float(entropy.mean()),
                "argmax_is_reference": float((p.argmax(axis=1) == refs).mean())}


def _teacher_probs(model, pad_id: int, temperature: float = 1.0):
    """batch -> the teacher's softmax (of its logits / ``temperature``) at the batch's scored
    positions, (n, V) float32, in the order of ``TeacherTargets.rows``: a teacher-forced forward
    along the reference, no tape."""
    def probs(batch):
        with no_grad():
            out = model(batch.src, batch.trg, 1.0, src_lengths=batch.src_lengths,
                        generator=np.random.default_rng(0))  # (T, B, V); full forcing draws nothing that matters
        logits = out[1:] if temperature == 1 else out[1:] / temperature  # (T-1, B, V)
        p = np.exp(to_numpy(log_softmax(logits, axis=2)).astype(np.float64))
        keep = batch.trg[1:] != pad_id  # (T-1, B)
        return p.transpose(1, 0, 2)[keep.T].astype(np.float32)  # (n, V), column by column
    return probs
