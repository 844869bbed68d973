"""The embedding's backward scatter-add (Numba): ``np.add.at(dweight, ids, dout)``, compiled.

Why: ``np.add.at`` is an unbuffered ufunc loop that pays per-index dispatch; a G2P step calls
it twice (encoder and decoder tables), ~1.9 ms each at 1,408 ids of a 43-row table (E = 128),
and ~56 ms at 4,096 ids of a 32,000-row subword table (benchmarks/NOTES.md). Here it is one
loop over the ids, in their order:

    for i in 0..N-1:   dweight[ids[i], :] += dout[i, :]

the same additions in the same order as ``np.add.at`` (each element of dweight is summed over
its occurrences first to last, starting from 0), and ``fastmath`` is off, so the result is
``np.add.at``'s bit for bit in float32 and float64 (tests/test_kernels_cpu.py: equality, not a
tolerance). A sort-then-``np.add.reduceat`` variant was 6x faster too, but its sums differ in
the last bit, enough to move a 3-epoch training run's result (benchmarks/NOTES.md, 2026-12-07).

No bounds checks: the ids were checked at the public entry (``nn.Embedding.forward``:
``check_ids``), and ``minis2s.dispatch.embedding_kernels`` sends only C-contiguous NumPy
float32/float64 gradients here.
"""
from __future__ import annotations

from minis2s.kernels.lstm_cpu import JIT  # the CPU kernels' one set of Numba options (cached, no fastmath)
from numba import njit


@njit(**JIT)
def _scatter_add(dweight, ids, dout):
    # dweight (V, E), ids (N,) in [0, V), dout (N, E)
    for i in range(ids.shape[0]):
        row = ids[i]
        for c in range(dout.shape[1]):
            dweight[row, c] += dout[i, c]


def scatter_add(dweight, ids, dout) -> None:
    """dweight (V, E) += the rows of dout (N, E) at ids (N,), in place; repeated ids sum. The
    shapes are checked here (the loop has no bounds checks: a dout of other rows than ids would be
    read past its end, where np.add.at raises)."""
    if ids.ndim != 1 or dout.ndim != 2 or dweight.ndim != 2 or ids.shape[0] != dout.shape[0] \
            or dout.shape[1] != dweight.shape[1]:
        raise ValueError(f"dout {dout.shape} does not match ids {ids.shape} and the table {dweight.shape}: "
                         "one row of dout per id, as wide as the table")
    _scatter_add(dweight, ids, dout)
