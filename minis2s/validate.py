"""Checks at the public entry points, so bad input fails early with a message that names the
argument and what is wrong (instead of NumPy silently wrapping ``-1`` to the last row, or an
error from deep inside an op)."""
from __future__ import annotations

import math
import numbers

import numpy as np

from minis2s.backend import FLOAT_DTYPES, array_module


def check_int_array(name: str, ids, ndim: int | None = None):
    """A non-empty integer array (bool refused), of ``ndim`` dimensions if given."""
    if not hasattr(ids, "dtype"):
        try:
            ids = np.asarray(ids)
        except Exception as e:
            raise TypeError(f"{name} must be an integer array, got {type(ids).__name__}") from e
    if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {ids.dtype}")
    if ndim is not None and ids.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(ids.shape)}")
    if ids.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)})")
    return ids


def check_ids(name: str, ids, num_embeddings: int, ndim: int | None = None):
    """Integer ids in [0, num_embeddings), of ``ndim`` dimensions if given, non-empty."""
    ids = check_int_array(name, ids, ndim)
    xp = array_module(ids)
    lo, hi = int(xp.min(ids)), int(xp.max(ids))
    if lo < 0:
        raise ValueError(f"{name} contains negative id {lo}; ids must be in [0, {num_embeddings})")
    if hi >= num_embeddings:
        raise ValueError(f"{name} contains id {hi}, out of range [0, {num_embeddings})")
    return ids


def check_float_array(name: str, x, ndim: int | None = None, dtype=None, shape=None):
    """A float32/float64 array (of ``dtype`` if given) with ``ndim`` dims and ``shape``."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if np.dtype(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if dtype is not None and np.dtype(x.dtype) != np.dtype(dtype):
        raise TypeError(f"{name} has dtype {x.dtype} but the module's parameters are {np.dtype(dtype)}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    return x


def check_lengths(name: str, lengths, batch: int, max_len: int):
    """Integer lengths (B,) with 1 <= length <= max_len."""
    lengths = check_int_array(name, lengths, ndim=1)
    if lengths.shape[0] != batch:
        raise ValueError(f"{name} has {lengths.shape[0]} entries but the batch has {batch}")
    xp = array_module(lengths)
    lo, hi = int(xp.min(lengths)), int(xp.max(lengths))
    if lo < 1:
        raise ValueError(f"{name} must be >= 1 (empty sequences are not allowed), got {lo}")
    if hi > max_len:
        raise ValueError(f"{name} must be <= {max_len} (the padded length), got {hi}")
    return lengths


def check_probability(name: str, p, *, closed_right: bool = True) -> float:
    """A real number in [0, 1] (or [0, 1) when ``closed_right`` is False)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(p).__name__}")
    p = float(p)
    ok = 0.0 <= p <= 1.0 if closed_right else 0.0 <= p < 1.0
    if not ok:
        raise ValueError(f"{name} must be in [0, {'1]' if closed_right else '1)'}, got {p}")
    return p


def check_positive_int(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return int(n)


def check_positive_real(name: str, x) -> float:
    """A finite real number > 0 (bools refused: ``lr=True`` is a bug, not 1.0)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"{name} must be a positive finite number, got {x!r}")
    return float(x)


def check_nonnegative_float(name: str, x) -> float:
    """A finite real number >= 0 (a bool is refused: True is not a weight)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if not 0.0 <= x < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {x}")
    return x
