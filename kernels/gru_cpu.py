"""A fast CPU GRU: kernels/lstm_cpu.py's recipe for minis2s/ops/gru.py's cell (gate order r, z, n).

    gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None) -> out, h_n, cache
    gru_backward(dout, dh_n, cache) -> dx, dh0, dw_ih, dw_hh, db_ih, db_hh

The reference is ``ops.recurrent_forward/backward`` with the GRU cell (tests/test_fastpath.py
checks against it). Shapes: T time, B batch, I input features, H hidden.

    forward   xg = x W_ihᵀ                      1 GEMM  (T·B, I) x (I, 3H)
              per step: hg = h_{t-1} W_hhᵀ      1 GEMM  (B, H) x (H, 3H)
                        fused pointwise         r, z, n, h_t; keeps hg_n + b_hh_n for backward
    backward  per step: fused pointwise         dxg_t (B, 3H), dhg_t (B, 3H), dh_t z
                        dh_{t-1} = dhg_t W_hh + dh_t z
              after the loop: dW_ih = dxgᵀ x, dW_hh = dhgᵀ h_{t-1}, dx = dxg W_ih

Unlike the LSTM, the biases cannot all be folded: the reset gate scales ``hg_n`` *after* its
bias b_hh_n, so the kernel adds b_ih and b_hh separately, in the reference's order.

    r = σ(xg_r + hg_r)   z = σ(xg_z + hg_z)   n = tanh(xg_n + r hg_n)   h = (1-z) n + z h_{t-1}
    da_n = dh (1-z)(1-n²)   da_z = dh (h_{t-1} - n) z(1-z)   da_r = da_n hg_n r(1-r)
    dxg = [da_r, da_z, da_n]   dhg = [da_r, da_z, da_n r]   dh_{t-1} = dh z + dhg W_hh

Versions (``VERSIONS``, numbered as kernels/lstm_cpu.py's): 2, the time loop in Python around the
fused step kernels; 3, the same loop compiled whole with direct cblas calls (``make_time_loops``;
only where kernels/blas_cpu.py finds NumPy's cblas). The same cache for both.

Padding (``lengths``) as kernels/lstm_cpu.py: padded steps keep the state, emit zeros, get no
gradient; row b's dh_n arrives unchanged at its last real step.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np
from numba import njit

from minis2s.kernels.activations_cpu import sigmoid, tanh
from minis2s.kernels.lstm_cpu import JIT, lengths_array, recurrent_weight_t, time_loop_versions


class GRUCache(NamedTuple):
    x: np.ndarray  # (T, B, I)
    w_ih: np.ndarray  # (3H, I)
    w_hh: np.ndarray  # (3H, H)
    gates: np.ndarray  # (T, B, 3H): r, z, n (rows of padded steps: not written)
    hg_n: np.ndarray  # (T, B, H): h_{t-1} W_hn + b_hh_n, what the reset gate scaled
    hs: np.ndarray  # (T+1, B, H): h0, h_0, ..., h_{T-1}
    lengths: np.ndarray  # (B,) int64


@njit(**JIT)
def gru_forward_step(t, hg, hs, xg, b_ih, b_hh, hg_n, out, lengths):
    """Step t. xg (T, B, 3H): x W_ihᵀ, overwritten with r, z, n; hg (B, 3H): h_{t-1} W_hhᵀ;
    reads hs[t], writes hs[t+1], out[t], hg_n[t]."""
    B, H = hs.shape[1], hs.shape[2]
    one = xg.dtype.type(1.0)
    for b in range(B):
        h_prev, h, o_t = hs[t, b], hs[t + 1, b], out[t, b]  # (H,)
        if t >= lengths[b]:  # padded step: keep the state, emit zero
            h[:] = h_prev
            o_t[:] = 0
            continue
        a, ha = xg[t, b], hg[b]  # (3H,)
        for j in range(2 * H):  # r, z
            a[j] = sigmoid((a[j] + b_ih[j]) + (ha[j] + b_hh[j]))
        hn, ha_n, bh_n = hg_n[t, b], ha[2 * H :], b_hh[2 * H :]
        for j in range(H):
            hn[j] = ha_n[j] + bh_n[j]
        r, z, n, bi_n = a[:H], a[H : 2 * H], a[2 * H :], b_ih[2 * H :]
        for j in range(H):
            n[j] = tanh((n[j] + bi_n[j]) + r[j] * hn[j])
        for j in range(H):
            h[j] = (one - z[j]) * n[j] + z[j] * h_prev[j]
            o_t[j] = h[j]


@njit(**JIT)
def gru_backward_step(t, dh, gates, hg_n, hs, dh_z, dh_n, dout, has_dout, dxg, dhg, lengths):
    """Step t. dh (B, H): dhg_{t+1} W_hh (row b reads dh_n instead at its last step); dh_z (B, H):
    dh_{t+1} z_{t+1} in, dh_t z_t out; writes dxg[t], dhg[t] (B, 3H). dh is used as scratch."""
    B, H = dh.shape
    one = gates.dtype.type(1.0)
    for b in range(B):
        L = lengths[b]
        if t >= L:  # padded step: no gradient
            dxg[t, b] = 0
            dhg[t, b] = 0
            continue
        d, dz_carry = dh[b], dh_z[b]  # (H,)
        if t == L - 1:
            d[:] = dh_n[b]
        else:
            for j in range(H):
                d[j] = d[j] + dz_carry[j]
        if has_dout:
            do = dout[t, b]
            for j in range(H):
                d[j] = d[j] + do[j]
        a, hn, h_prev = gates[t, b], hg_n[t, b], hs[t, b]
        r, z, n = a[:H], a[H : 2 * H], a[2 * H :]
        gx, gh = dxg[t, b], dhg[t, b]  # (3H,)
        da_r, da_z, da_n, dh_r, dh_zg, dh_nr = gx[:H], gx[H : 2 * H], gx[2 * H :], gh[:H], gh[H : 2 * H], gh[2 * H :]
        for j in range(H):
            da_n[j] = d[j] * (one - z[j]) * (one - n[j] * n[j])
        for j in range(H):
            da_z[j] = d[j] * (h_prev[j] - n[j]) * z[j] * (one - z[j])
        for j in range(H):
            da_r[j] = da_n[j] * hn[j] * r[j] * (one - r[j])
        for j in range(H):
            dh_r[j] = da_r[j]
            dh_zg[j] = da_z[j]
        for j in range(H):
            dh_nr[j] = da_n[j] * r[j]
        for j in range(H):
            dz_carry[j] = d[j] * z[j]


# version -> (forward loop, backward loop), numbered as kernels/lstm_cpu.py's: 2 runs the time loop
# in Python around the step kernels above (which have always used the vectorisable tanh, so there
# is no version 1), 3 compiles the loop whole (only where kernels/blas_cpu.py found NumPy's cblas).
_TIME_LOOPS = time_loop_versions("gru", {2: gru_forward_step}, gru_backward_step)


def gru_forward_version(version, x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None):
    """x: (T, B, I), h0: (B, H), w_ih: (3H, I), w_hh: (3H, H), b_ih/b_hh: (3H,).

    Returns out (T, B, H), h_n (B, H), cache.
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    x = np.ascontiguousarray(x)
    xg = np.empty((T, B, 3 * H), dtype=dt)  # (T, B, 3H): x W_ihᵀ, then r, z, n
    np.matmul(x.reshape(T * B, I), w_ih.T, out=xg.reshape(T * B, 3 * H))  # all steps: one GEMM
    hs = np.empty((T + 1, B, H), dtype=dt)
    hs[0] = h0
    hg_n = np.empty((T, B, H), dtype=dt)
    out = np.empty((T, B, H), dtype=dt)
    hg = np.empty((B, 3 * H), dtype=dt)  # (B, 3H): reused by every step
    lens = lengths_array(lengths, T, B)
    w_hh_t = recurrent_weight_t(w_hh, T)  # (H, 3H)
    _TIME_LOOPS[version][0](hs, w_hh_t, hg, xg, b_ih, b_hh, hg_n, out, lens)
    return out, hs[T].copy(), GRUCache(x, w_ih, w_hh, xg, hg_n, hs, lens)


def gru_backward_version(version, dout, dh_n, cache):
    """dout: (T, B, H) or None (outputs unused); dh_n: (B, H) or None. Any version's cache.

    Returns dx (T, B, I), dh0 (B, H), dw_ih, dw_hh, db_ih, db_hh.
    """
    x, w_ih, w_hh, gates, hg_n, hs, lens = cache
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    has_dout = dout is not None
    dout = np.ascontiguousarray(dout) if has_dout else np.zeros((1, 1, H), dtype=dt)
    dh_n = np.zeros((B, H), dtype=dt) if dh_n is None else np.ascontiguousarray(dh_n)
    dh = np.zeros((B, H), dtype=dt)  # (B, H): dhg_t W_hh, reused by every step
    dh_z = np.zeros((B, H), dtype=dt)  # (B, H): dh_t z_t, the pointwise path to h_{t-1}
    dxg = np.empty((T, B, 3 * H), dtype=dt)
    dhg = np.empty((T, B, 3 * H), dtype=dt)
    _TIME_LOOPS[version][1](w_hh, dhg, dh, gates, hg_n, hs, dh_z, dh_n, dout, has_dout, dxg, dhg, lens)
    dh0 = dh + dh_z  # the reference's order: GEMM part + pointwise part
    empty = lens == 0
    if empty.any():
        dh0[empty] = dh_n[empty]
    dxg2, dhg2 = dxg.reshape(T * B, 3 * H), dhg.reshape(T * B, 3 * H)
    dw_ih = dxg2.T @ x.reshape(T * B, I)  # (3H, I)
    dw_hh = dhg2.T @ hs[:T].reshape(T * B, H)  # (3H, H)
    dx = (dxg2 @ w_ih).reshape(T, B, I)
    return dx, dh0, dw_ih, dw_hh, dxg2.sum(axis=0), dhg2.sum(axis=0)


VERSIONS = {v: (partial(gru_forward_version, v), partial(gru_backward_version, v)) for v in _TIME_LOOPS}
DEFAULT_VERSION = 2  # as kernels/lstm_cpu.py: version 3 measured no faster


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None):
    """x: (T, B, I), h0: (B, H), w_ih: (3H, I), w_hh: (3H, H), b_ih/b_hh: (3H,).

    Returns out (T, B, H), h_n (B, H), cache. The fastest version (``DEFAULT_VERSION``).
    """
    return gru_forward_version(DEFAULT_VERSION, x, h0, w_ih, w_hh, b_ih, b_hh, lengths)


def gru_backward(dout, dh_n, cache):
    """dout: (T, B, H) or None; dh_n: (B, H) or None.

    Returns dx (T, B, I), dh0 (B, H), dw_ih, dw_hh, db_ih, db_hh.
    """
    return gru_backward_version(DEFAULT_VERSION, dout, dh_n, cache)
