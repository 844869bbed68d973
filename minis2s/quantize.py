"""Storing a model's weights in fewer bytes: float16, or int8 with one scale per row.

    int8, per row r of a matrix W (R, C) (an embedding row, one gate unit's input weights):
        s_r = max_c |W[r, c]| / 127          q[r, c] = round(W[r, c] / s_r)  in [-127, 127]
        W'[r, c] = s_r q[r, c]               |W' - W| <= s_r / 2  (half a quantisation step)

A row scale (rather than one scale per tensor) keeps the error of each row proportional to that
row's own size, so a row of small weights is not flattened to zero by a large one elsewhere. A
1-D tensor (a bias, attention's v) stays float16: it is a tiny share of the bytes.

``pack`` turns {name: float array} into the tensors a safetensors file stores — for int8 the
codes under ``name`` and the scales under ``name + SCALE_SUFFIX`` — and ``unpack`` undoes it to
float32. Only minis2s reads int8 files; float32 and float16 files load into torch directly.
"""
from __future__ import annotations

import numpy as np

STORED_DTYPES = ("float32", "float16", "int8")
SCALE_SUFFIX = ".__int8_scale__"


def check_stored_dtype(stored_dtype) -> str:
    if stored_dtype not in STORED_DTYPES:
        raise ValueError(f"stored_dtype must be one of {STORED_DTYPES}, got {stored_dtype!r}")
    return stored_dtype


def quantize_int8(w):
    """w: (R, ...) float -> codes (R, ...) int8, scales (R,) float32 (one per row of axis 0)."""
    w = np.asarray(w, dtype=np.float32)
    rows = w.reshape(w.shape[0], -1)  # (R, C)
    scale = np.abs(rows).max(axis=1) / 127.0  # (R,)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # an all-zero row: any scale is exact
    q = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scale


def dequantize_int8(q, scale):
    """codes (R, ...) int8, scales (R,) -> float32 (R, ...)."""
    q = np.asarray(q)
    return (q.reshape(q.shape[0], -1).astype(np.float32) * scale[:, None]).reshape(q.shape)


def pack(weights: dict, stored_dtype: str) -> dict:
    """{name: array} -> the tensors to store for ``stored_dtype`` (non-float arrays as they are)."""
    check_stored_dtype(stored_dtype)
    out = {}
    for name, w in weights.items():
        if w.dtype.kind != "f" or stored_dtype == "float32":
            out[name] = w
        elif stored_dtype == "float16" or w.ndim < 2:
            out[name] = w.astype(np.float16)
        else:
            out[name], out[name + SCALE_SUFFIX] = quantize_int8(w)
    return out


def unpack(tensors: dict, stored_dtype: str) -> dict:
    """The inverse of ``pack``: stored tensors -> {name: array}, int8 codes back to float32.
    A KeyError/ValueError names a missing or misshapen scale."""
    check_stored_dtype(stored_dtype)
    if stored_dtype != "int8":
        return dict(tensors)
    out = {}
    for name, t in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            if name[: -len(SCALE_SUFFIX)] not in tensors:
                raise KeyError(f"int8 scale {name!r} has no codes beside it")
            continue
        if t.dtype != np.int8:
            out[name] = t
            continue
        scale = tensors.get(name + SCALE_SUFFIX)
        if scale is None:
            raise KeyError(f"int8 tensor {name!r} has no {name + SCALE_SUFFIX!r} beside it")
        if scale.shape != (t.shape[0],):
            raise ValueError(f"int8 tensor {name!r} of shape {t.shape} has scales of shape {scale.shape}, "
                             f"expected ({t.shape[0]},)")
        out[name] = dequantize_int8(t, scale)
    return out
