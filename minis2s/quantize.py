"""Storing a model's weights in fewer bytes: float16, int8 with one scale per row, or int4 with
one scale per group of 16 weights of a row.

    int8, per row r of a matrix W (R, C) (an embedding row, one gate unit's input weights):
        s_r = max_c |W[r, c]| / 127          q[r, c] = round(W[r, c] / s_r)  in [-127, 127]
        W'[r, c] = s_r q[r, c]               |W' - W| <= s_r / 2  (half a quantisation step)

    int4, per group g of INT4_GROUP = 16 consecutive weights of a row of a matrix (R, C), C a
    multiple of 16 (other matrices are stored as int8), a float16 scale s_g per group:
        q[r, c] = clip(round(W[r, c] / s_g), -7, 7)       W'[r, c] = s_g q[r, c]
    two codes a byte (q + 8 in 1..15; the low nibble the even column): 4 + 1 = 5 bits a weight
    (6.4x fewer bytes than float32), for a model 1.6x int8's size in the same file. Fifteen
    levels are coarse, so the group is short (its error follows its own 16 weights, not the
    row's) and its scale is not simply max|g| / 7: of the INT4_CLIPS candidates
    s_g = a max|g| / 7, a in [0.5, 1], each group takes the one of least squared error — a
    clipped outlier costs less than a coarser grid for the other fifteen. Measured on the
    `distilled` recipe's float32 model (dev WER 25.22%): 25.70% with max / 7 and groups of 32,
    25.64% with the search, 25.27% with the search and groups of 16.

A row scale (rather than one scale per tensor) keeps the error of each row proportional to that
row's own size, so a row of small weights is not flattened to zero by a large one elsewhere. A
1-D tensor (a bias, attention's v) stays float16: it is a tiny share of the bytes.

``pack`` turns {name: float array} into the tensors a safetensors file stores — for int8 the
codes under ``name`` and the scales under ``name + SCALE_SUFFIX``, for int4 the packed codes
(R, C/2) uint8 under ``name`` and the scales under ``name + INT4_SCALE_SUFFIX`` — and ``unpack``
undoes it to float32; ``logical_shapes`` gives the parameters' shapes from a file's header
alone. Only minis2s reads int8 and int4 files; float32 and float16 files load into torch directly.
"""
from __future__ import annotations

import numpy as np

STORED_DTYPES = ("float32", "float16", "int8", "int4")
SCALE_SUFFIX = ".__int8_scale__"
INT4_SCALE_SUFFIX = ".__int4_scale__"
INT4_GROUP = 16
INT4_CLIPS = np.linspace(0.5, 1.0, 26)  # candidate a of s_g = a max|g| / 7, in steps of 0.02


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


def int4_fits(w) -> bool:
    """Whether ``w`` is stored as int4 (a matrix whose rows are whole groups), else as int8."""
    return w.ndim == 2 and w.shape[1] % INT4_GROUP == 0


def quantize_int4(w):
    """w: (R, C) float, C a multiple of INT4_GROUP -> codes (R, C/2) uint8, scales (R, C/16) float16:
    each group's scale the candidate of least squared error (the module's docstring)."""
    w = np.asarray(w, dtype=np.float32)
    R, C = w.shape
    groups = w.reshape(R, C // INT4_GROUP, INT4_GROUP).astype(np.float64)  # (R, G, 16)
    amax = np.abs(groups).max(axis=2)  # (R, G)
    if amax.max(initial=0.0) / 7 > np.finfo(np.float16).max:
        raise ValueError(f"int4: weights up to {amax.max():.3g} are too large for float16 scales")
    best_err = np.full(amax.shape, np.inf)
    best_scale = np.ones(amax.shape, dtype=np.float16)
    for a in INT4_CLIPS:
        scale = (amax * a / 7.0).astype(np.float16)  # rounded first: the codes are for the stored scale
        scale = np.where(scale > 0, scale, np.float16(1.0))  # an all-zero group: any scale is exact
        s64 = scale.astype(np.float64)[:, :, None]
        err = ((np.clip(np.rint(groups / s64), -7, 7) * s64 - groups) ** 2).sum(axis=2)  # (R, G)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_scale = np.where(better, scale, best_scale)
    s64 = best_scale.astype(np.float64)[:, :, None]
    q = np.clip(np.rint(groups / s64), -7, 7).astype(np.int16).reshape(R, C) + 8  # 1..15
    codes = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)  # (R, C/2)
    return codes, best_scale


def dequantize_int4(codes, scale):
    """codes (R, C/2) uint8, scales (R, C/16) -> float32 (R, C)."""
    R, half = codes.shape
    q = np.empty((R, 2 * half), dtype=np.float32)
    q[:, 0::2] = (codes & 15).astype(np.float32) - 8
    q[:, 1::2] = (codes >> 4).astype(np.float32) - 8
    return (q.reshape(R, -1, INT4_GROUP) * scale.astype(np.float32)[:, :, None]).reshape(R, 2 * half)


def pack(weights: dict, stored_dtype: str) -> dict:
    """{name: array} -> the tensors to store for ``stored_dtype`` (non-float arrays as they are)."""
    check_stored_dtype(stored_dtype)
    out = {}
    for name, w in weights.items():
        if w.dtype.kind != "f" or stored_dtype == "float32":
            out[name] = w
        elif stored_dtype == "float16" or w.ndim < 2:
            out[name] = w.astype(np.float16)
        elif stored_dtype == "int4" and int4_fits(w):
            out[name], out[name + INT4_SCALE_SUFFIX] = quantize_int4(w)
        else:
            out[name], out[name + SCALE_SUFFIX] = quantize_int8(w)
    return out


def unpack(tensors: dict, stored_dtype: str) -> dict:
    """The inverse of ``pack``: stored tensors -> {name: array}, int8 and int4 codes back to
    float32. A KeyError/ValueError names a missing or misshapen scale."""
    check_stored_dtype(stored_dtype)
    if stored_dtype not in ("int8", "int4"):
        return dict(tensors)
    suffixes = {np.dtype(np.int8): SCALE_SUFFIX}
    if stored_dtype == "int4":
        suffixes[np.dtype(np.uint8)] = INT4_SCALE_SUFFIX
    out = {}
    for name, t in tensors.items():
        suffix = next((x for x in suffixes.values() if name.endswith(x)), None)
        if suffix is not None:
            if name[: -len(suffix)] not in tensors:
                raise KeyError(f"{stored_dtype} scale {name!r} has no codes beside it")
            continue
        suffix = suffixes.get(t.dtype)
        if suffix is None:
            out[name] = t
            continue
        scale = tensors.get(name + suffix)
        if scale is None:
            raise KeyError(f"{t.dtype} tensor {name!r} has no {name + suffix!r} beside it")
        if suffix == SCALE_SUFFIX:
            expected = (t.shape[0],)
        elif t.ndim != 2 or (2 * t.shape[1]) % INT4_GROUP:
            raise ValueError(f"int4 tensor {name!r} has codes of shape {t.shape}, expected (R, a multiple of "
                             f"{INT4_GROUP // 2})")
        else:
            expected = (t.shape[0], 2 * t.shape[1] // INT4_GROUP)
        if scale.shape != expected:
            raise ValueError(f"{stored_dtype} tensor {name!r} of shape {t.shape} has scales of shape {scale.shape}, "
                             f"expected {expected}")
        out[name] = dequantize_int8(t, scale) if suffix == SCALE_SUFFIX else dequantize_int4(t, scale)
    return out


def logical_shapes(stored: dict) -> dict:
    """{name: shape} of a file's stored tensors -> {name: shape} of the weights they unpack to:
    scales left out, int4 codes (R, C/2) read as (R, C). From the header alone, so that a
    model's sizes are checked before any data is read."""
    out = {}
    for name, shape in stored.items():
        if name.endswith((SCALE_SUFFIX, INT4_SCALE_SUFFIX)):
            continue
        out[name] = (shape[0], 2 * shape[1]) if name + INT4_SCALE_SUFFIX in stored and len(shape) == 2 else tuple(shape)
    return out
