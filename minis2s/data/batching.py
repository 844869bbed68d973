"""Padded, time-first batches, bucketed by length so little compute goes to padding.

A batch holds ``src`` (S, B) with ``src_lengths`` (B,) and ``trg`` (T, B) = <sos> y <eos> <pad>...
Padding is inert downstream: the encoder stops each row at its length, and the loss ignores
<pad> targets (``ignore_index = pad_id``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minis2s.data.vocab import Vocab


@dataclass
class Batch:
    """One batch of examples, time first, as the models take it.

    ``src`` (S, B): source ids padded with <pad> past each row's ``src_lengths`` (B,);
    ``trg`` (T, B): <sos>, the target ids, <eos>, then <pad> (None when decoding);
    ``index`` (B,): each column's position in the list the batch was cut from, so results can
    be put back in input order (``make_batches`` sorts by length); ``trg_lengths`` (B,): each
    column's length in ``trg``, <sos> and <eos> included (None without ``trg``)."""

    src: np.ndarray  # (S, B) int64
    src_lengths: np.ndarray  # (B,) int64
    trg: np.ndarray  # (T, B) int64, trg[0] = <sos>
    index: np.ndarray  # (B,) positions of these examples in the dataset
    trg_lengths: np.ndarray | None = None  # (B,) int64

    @property
    def size(self) -> int:
        return self.src.shape[1]

    def take(self, columns) -> Batch:
        """The batch of these columns (B',), padded as this one is (same S and T)."""
        trg = None if self.trg is None else self.trg[:, columns]
        trg_lengths = None if self.trg_lengths is None else self.trg_lengths[columns]
        return Batch(self.src[:, columns], self.src_lengths[columns], trg, self.index[columns], trg_lengths)


def pad_sequences(seqs, pad_id: int = Vocab.pad_id):
    """List of id lists -> (L, B) int64 array (time first) and lengths (B,)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    out = np.full((int(lengths.max()), len(seqs)), pad_id, dtype=np.int64)
    for b, s in enumerate(seqs):
        out[: len(s), b] = s
    return out, lengths


def make_batches(src_ids, trg_ids, batch_size: int, *, rng=None, bucket_factor: int = 50):
    """Bucket by source length, cut into batches, shuffle the batch order.

    src_ids: list of id lists (no specials); trg_ids: list of id lists (no specials) or None.
    With ``rng`` (a numpy Generator) examples are shuffled inside length buckets of
    ``bucket_factor`` batches and the batches are shuffled; without it the order is fixed
    (sorted by length), which evaluation uses. With targets, each batch's columns are sorted by
    target length, longest first: the decoder's step GEMMs then cover only the rows still
    running (a prefix; ops.step_rows), as with PyTorch's PackedSequence.
    """
    n = len(src_ids)
    order = np.arange(n)
    if rng is not None:
        order = rng.permutation(n)
    lens = np.array([len(src_ids[i]) for i in order])
    if rng is None:
        order = order[np.argsort(lens, kind="stable")]
    else:  # sort within big chunks: batches of similar lengths, but still random
        chunk = batch_size * bucket_factor
        order = np.concatenate(
            [c[np.argsort(lens[i : i + chunk], kind="stable")] for i, c in
             ((i, order[i : i + chunk]) for i in range(0, n, chunk))]
        )
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    out = []
    for idx in batches:
        trg = trg_lengths = None
        if trg_ids is not None:
            idx = idx[np.argsort([-len(trg_ids[i]) for i in idx], kind="stable")]  # longest target first
            trg, trg_lengths = pad_sequences([[Vocab.sos_id] + trg_ids[i] + [Vocab.eos_id] for i in idx])
        src, src_lengths = pad_sequences([src_ids[i] for i in idx])
        out.append(Batch(src, src_lengths, trg, idx, trg_lengths))
    return out
