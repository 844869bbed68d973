"""Embedding lookup: row ``ids[...]`` of a (V, E) table.

Forward is a gather; backward is a scatter-add, because the same id can appear many times in a
batch and every occurrence contributes to that row's gradient (plain ``dW[ids] += dout`` would
keep only the last occurrence).
"""
import numpy as np

from minis2s.backend import array_module


def embedding_forward(ids, weight):
    """ids: integer array of any shape (...), weight: (V, E) -> out (..., E), cache."""
    ids = array_module(weight).asarray(ids)  # NumPy ids for a CuPy table go to the GPU (no-op on CPU)
    out = weight[ids]  # (..., E)
    return out, (ids, weight.shape)


def embedding_backward(dout, cache, scatter_add=None):
    """dout: (..., E) -> dweight (V, E), summing the rows of repeated ids. ``scatter_add``: a
    compiled ``np.add.at(dweight, ids, dout)`` to run instead (``minis2s.dispatch``'s
    ``embedding_kernels(dout).scatter_add``; the same sums bit for bit), for ids already checked."""
    ids, wshape = cache
    xp = array_module(dout)
    dweight = xp.zeros(wshape, dtype=dout.dtype)
    flat_ids = ids.reshape(-1)
    flat_dout = dout.reshape(-1, wshape[1])
    if scatter_add is not None:
        scatter_add(dweight, flat_ids, flat_dout)
    elif xp is np:
        np.add.at(dweight, flat_ids, flat_dout)
    else:  # pragma: no cover - GPU only
        import cupyx

        cupyx.scatter_add(dweight, flat_ids, flat_dout)
    return dweight
