"""A fast CPU LSTM: the time goes into GEMMs; everything between them is one fused Numba pass.

Same functions, arguments and results as the reference in minis2s/ops/lstm.py (checked against it
by tests/test_fastpath.py), so either can be swapped in:

    lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None) -> out, (h_n, c_n), cache
    lstm_backward(dout, dh_n, dc_n, cache) -> dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh

Shapes: T time, B batch, I input features, H hidden; gates (i, f, g, o) as in PyTorch.

Where the time of one forward+backward goes (T steps):

    forward   xg = x W_ihᵀ                      1 GEMM  (T·B, I) x (I, 4H)
              per step: hg = h_{t-1} W_hhᵀ      1 GEMM  (B, H) x (H, 4H)
                        fused pointwise         1 Numba pass: a = xg + hg + b; gates; c; tanh c; h
    backward  per step: fused pointwise         1 Numba pass: da (B, 4H), dc_{t-1}
                        dh_{t-1} = da W_hh      1 GEMM  (B, 4H) x (4H, H)
              after the loop: dW_ih = daᵀ x, dW_hh = daᵀ h_{t-1}, dx = da W_ih   3 GEMMs over T·B rows

Every buffer is allocated once per call (np.empty) and written in place: ``np.matmul(..., out=)``
and Numba kernels that write into (T, B, ·) arrays, so a step allocates nothing. W_hhᵀ is copied
once per sequence into a contiguous array (``recurrent_weight_t``: the per-step GEMM runs up to
twice as fast on it); the other weights are used through transposed *views*, which BLAS reads
with a transpose flag at full speed in the large GEMMs (and the decoder, which calls this with
T = 1 at every step, gets views only).

Versions (llm.c style; ``VERSIONS`` maps number -> (forward, backward); tests check them all):

    1  fused Numba kernels calling ``math.tanh``: libm is a scalar call, the gate loop does not
       vectorise. Forward step at B=64, H=512, float32, one core: pointwise 2.3 ms, twice the
       recurrent GEMM (1.1 ms).
    2  the same kernels with kernels/activations_cpu.py's vectorisable tanh: pointwise 0.09 ms
       forward, 0.02 ms backward.
    3  version 2's kernels, with the time loop of forward and of backward compiled whole
       (``make_time_loops``): each step's GEMM is a direct cblas call into NumPy's own OpenBLAS
       (kernels/blas_cpu.py), so a sequence is one Numba call and no interpreter runs between
       steps. Only where that cblas is found (``blas_cpu.AVAILABLE``); the thread count is
       whatever the caller's ``minis2s.threads.blas_threads`` scope set on that same library.

Versions 1 and 2 run the time loop in Python: per step one ``np.matmul`` and one Numba call.
The default is version 2: version 3 measured no faster (within ±5% either way at the issue-15
shapes and in G2P training, benchmarks/NOTES.md): the time is in the small step GEMMs, not
between them.
Every version makes the same cache, and any version's backward consumes it.

Where the time goes now (one core, float32, T=32, B=64, H=512, benchmarks/lstm_cpu.py --clock cpu):
~97% in the GEMMs, which run at ~90% of the machine's measured sgemm rate; the rest is the fused
kernels. The loops inside the kernels are written for LLVM's vectoriser: zero-based ranges over
views, few arrays written per loop (it gives up when it cannot check them all for overlap).

Padding (``lengths`` (B,)), as the reference: steps t >= lengths[b] keep row b's state, emit
zeros and get no gradient. Rows are padded at the end, so in backward row b's gradient from
(dh_n, dc_n) arrives unchanged at its last real step t = lengths[b] - 1.
"""
from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import numpy as np
from numba import njit

from minis2s.kernels import blas_cpu
from minis2s.kernels.activations_cpu import sigmoid, tanh
from minis2s.kernels.blas_cpu import matmul_into

JIT = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}


class LSTMCache(NamedTuple):
    x: np.ndarray  # (T, B, I)
    w_ih: np.ndarray  # (4H, I)
    w_hh: np.ndarray  # (4H, H)
    gates: np.ndarray  # (T, B, 4H): activated i, f, g, o (rows of padded steps: not written)
    hs: np.ndarray  # (T+1, B, H): h_{-1} = h0, h_0, ..., h_{T-1} (padded rows carry their state)
    cs: np.ndarray  # (T+1, B, H): c0, c_0, ..., c_{T-1}
    tanh_c: np.ndarray  # (T, B, H)
    lengths: np.ndarray  # (B,) int64 (all T when no padding)
    version: int


# ---- fused pointwise kernels ------------------------------------------------------------------
#   forward:   a = xg + hg + b;  i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
#              c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
#   backward:  dh = dh_t + dout_t;          dc = dc_t + dh o (1 - tanh²c_t)
#              da_i = dc g i(1-i);  da_f = dc c_{t-1} f(1-f);  da_g = dc i (1-g²);  da_o = dh tanh c_t o(1-o)
#              dc_{t-1} = dc f               (dh_{t-1} = da W_hh is the GEMM after the kernel)


def _make_forward_kernel(tanh_fn, sigmoid_fn):
    def forward_step(t, hg, hs, xg, bias, cs, tanh_c, out, lengths):
        """Step t. xg (T, B, 4H): x W_ihᵀ, overwritten row by row with the activated gates;
        hg (B, 4H): h_{t-1} W_hhᵀ; bias (4H,): b_ih + b_hh; reads hs[t], cs[t], writes hs[t+1],
        cs[t+1], tanh_c[t], out[t]."""
        B, H = hs.shape[1], hs.shape[2]
        for b in range(B):
            h_prev, c_prev = hs[t, b], cs[t, b]  # (H,)
            h, c, tc, o_t = hs[t + 1, b], cs[t + 1, b], tanh_c[t, b], out[t, b]  # (H,)
            if t >= lengths[b]:  # padded step: keep the state, emit zero
                h[:] = h_prev
                c[:] = c_prev
                o_t[:] = 0
                continue
            # One short loop per gate block: a loop that reads a[H + j] after writing a[j], or that
            # starts at a non-zero index, is not vectorised by LLVM.
            a, ha = xg[t, b], hg[b]  # (4H,)
            for j in range(2 * H):  # i, f
                a[j] = sigmoid_fn(a[j] + ha[j] + bias[j])
            g, hg_g, b_g = a[2 * H : 3 * H], ha[2 * H : 3 * H], bias[2 * H : 3 * H]
            for j in range(H):
                g[j] = tanh_fn(g[j] + hg_g[j] + b_g[j])
            o, hg_o, b_o = a[3 * H :], ha[3 * H :], bias[3 * H :]
            for j in range(H):
                o[j] = sigmoid_fn(o[j] + hg_o[j] + b_o[j])
            i, f = a[:H], a[H : 2 * H]
            for j in range(H):
                c[j] = f[j] * c_prev[j] + i[j] * g[j]
                tc[j] = tanh_fn(c[j])
                h[j] = o[j] * tc[j]
                o_t[j] = h[j]

    return forward_step


def _make_backward_kernel():
    def backward_step(t, dh, gates, cs, tanh_c, dh_n, dout, has_dout, dc, da, lengths):
        """Step t. dh (B, H): dh_t from the GEMM of step t+1 (row b reads dh_n instead at its last
        step t = lengths[b]-1); dc (B, H): dc_t in, dc_{t-1} out; writes da[t] (B, 4H)."""
        B, H = dh.shape
        one = gates.dtype.type(1.0)
        for b in range(B):
            L = lengths[b]
            if t >= L:  # padded step: no gradient; dh_n, dc_n pass through untouched
                da[t, b] = 0
                continue
            dh_ = dh_n[b] if t == L - 1 else dh[b]  # (H,)
            dout_ = dout[t, b] if has_dout else dout[0, 0]  # (H,)
            a, d = gates[t, b], da[t, b]  # (4H,)
            i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
            di, df, dg, do = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
            c_prev, tc, dc_ = cs[t, b], tanh_c[t, b], dc[b]  # (H,)
            # few arrays written per loop: LLVM vectorises only what it can check for overlap
            for j in range(H):
                d_h = dh_[j] + dout_[j] if has_dout else dh_[j]
                do[j] = d_h * tc[j] * o[j] * (one - o[j])
                dc_[j] = dc_[j] + d_h * o[j] * (one - tc[j] * tc[j])
            for j in range(H):
                di[j] = dc_[j] * g[j] * i[j] * (one - i[j])
            for j in range(H):
                df[j] = dc_[j] * c_prev[j] * f[j] * (one - f[j])
            for j in range(H):
                dg[j] = dc_[j] * i[j] * (one - g[j] * g[j])
            for j in range(H):
                dc_[j] = dc_[j] * f[j]

    return backward_step


@njit(**JIT)
def _sigmoid_libm(x):
    return 0.5 * (math.tanh(0.5 * x) + 1.0)


def named(fn, name):
    """``fn`` under its own name. Numba names a compiled function's symbol after its qualified
    name (and a counter that restarts in every process), so the closures of one factory share
    it: when both come from the on-disk cache, a compiled caller may be linked to the wrong one
    (measured: version 3's loop ran version 1's step kernel after both were loaded from the cache)."""
    fn.__name__ = fn.__qualname__ = name
    return fn


_BACKWARD_STEP = njit(**JIT)(_make_backward_kernel())  # no transcendentals: one for every version
_FORWARD_STEP = {
    1: njit(**JIT)(named(_make_forward_kernel(math.tanh, _sigmoid_libm), "lstm_forward_step_v1")),
    2: njit(**JIT)(named(_make_forward_kernel(tanh, sigmoid), "lstm_forward_step_v2")),
}


# ---- the time loops: one source, run by Python (versions 1, 2) or compiled whole (version 3) ------


def make_time_loops(forward_step, backward_step):
    """(forward_loop, backward_loop) of a recurrence around its fused step kernels (LSTM, GRU):

        forward_loop(hs, w_hh_t, hg, *args)     every t: hg = hs[t] W_hhᵀ, forward_step(t, hg, hs, *args)
        backward_loop(w_hh, dhg, dh, *args)     every t from the last: backward_step(t, dh, *args),
                                                then dh = dhg[t] W_hh (dh_{t-1} through the GEMM)

    hs (T+1, B, H), w_hh_t (H, G), hg (B, G); w_hh (G, H), dhg (T, B, G) (what the step kernel
    wrote as the gradient of hg_t), dh (B, H). Run as Python, each step is one np.matmul and one
    call of a compiled kernel, each paying the interpreter's and Numba's dispatch (~5-30 µs);
    compiled with ``njit``, ``matmul_into`` is a direct cblas call (kernels/blas_cpu.py) and the
    whole sequence is one call."""

    def forward_loop(hs, w_hh_t, hg, *args):
        for t in range(hs.shape[0] - 1):
            matmul_into(hs[t], w_hh_t, hg)
            forward_step(t, hg, hs, *args)

    def backward_loop(w_hh, dhg, dh, *args):
        for t in range(dhg.shape[0] - 1, -1, -1):
            backward_step(t, dh, *args)
            matmul_into(dhg[t], w_hh, dh)

    return forward_loop, backward_loop


def time_loop_versions(cell, forward_steps, backward_step):
    """{version: (forward_loop, backward_loop)}: the loops in Python around each forward step
    kernel ({version: kernel}), and version 3, the loops around version 2's kernel compiled whole
    (only where kernels/blas_cpu.py found NumPy's cblas), named after ``cell`` (see ``named``)."""
    loops = {v: make_time_loops(step, backward_step) for v, step in forward_steps.items()}
    if blas_cpu.AVAILABLE:
        loops[3] = tuple(njit(**JIT)(named(f, f"{cell}_{f.__name__}_v3"))
                         for f in make_time_loops(forward_steps[2], backward_step))
    return loops


_TIME_LOOPS = time_loop_versions("lstm", _FORWARD_STEP, _BACKWARD_STEP)


# ---- the driver: GEMMs and the time loop --------------------------------------------------------


def lengths_array(lengths, T, B):
    """(B,) int64 lengths for the kernels: all T when there is no padding."""
    if lengths is None:
        return np.full(B, T, dtype=np.int64)
    return np.asarray(lengths, dtype=np.int64)


def recurrent_weight_t(w_hh, T):
    """W_hhᵀ (H, nH) for the per-step GEMM h_{t-1} W_hhᵀ: a contiguous copy when the sequence has
    more than one step, the transposed view (no copy) for a single step.

    Why copy: OpenBLAS's AVX-512 sgemm runs the small transposed-operand GEMM of a step at half the
    rate of the same GEMM on a contiguous operand (one core, B=16, H=128: 35 µs against 17 µs;
    B=128, H=384: 756 against 638 µs; B=64, H=512: 840 against 794 µs). The copy costs one pass
    over W_hh, repaid by the second step. A decoder that calls with T = 1 at every step would
    pay it every step, so it keeps the view."""
    return np.ascontiguousarray(w_hh.T) if T > 1 else w_hh.T


def lstm_forward_version(version, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None):
    """x: (T, B, I), h0/c0: (B, H), w_ih: (4H, I), w_hh: (4H, H), b_ih/b_hh: (4H,).

    Returns out (T, B, H), (h_n, c_n), cache.
    """
    forward_loop = _TIME_LOOPS[version][0]
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    x = np.ascontiguousarray(x)
    xg = np.empty((T, B, 4 * H), dtype=dt)  # (T, B, 4H): x W_ihᵀ, then the activated gates
    np.matmul(x.reshape(T * B, I), w_ih.T, out=xg.reshape(T * B, 4 * H))  # all steps: one GEMM
    bias = b_ih + b_hh  # (4H,): added inside the kernel
    hs = np.empty((T + 1, B, H), dtype=dt)
    cs = np.empty((T + 1, B, H), dtype=dt)
    hs[0], cs[0] = h0, c0
    tanh_c = np.empty((T, B, H), dtype=dt)
    out = np.empty((T, B, H), dtype=dt)
    hg = np.empty((B, 4 * H), dtype=dt)  # (B, 4H): reused by every step
    lens = lengths_array(lengths, T, B)
    w_hh_t = recurrent_weight_t(w_hh, T)  # (H, 4H)
    forward_loop(hs, w_hh_t, hg, xg, bias, cs, tanh_c, out, lens)
    cache = LSTMCache(x, w_ih, w_hh, xg, hs, cs, tanh_c, lens, version)
    return out, (hs[T].copy(), cs[T].copy()), cache


def lstm_backward_version(version, dout, dh_n, dc_n, cache):
    """dout: (T, B, H) or None (outputs unused); dh_n, dc_n: (B, H) or None. Any version's cache
    (they are all the same) with any version's backward.

    Returns dx (T, B, I), dh0, dc0 (B, H), dw_ih, dw_hh, db_ih, db_hh.
    """
    x, w_ih, w_hh, gates, hs, cs, tanh_c, lens, _ = cache
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    has_dout = dout is not None
    dout = np.ascontiguousarray(dout) if has_dout else np.zeros((1, 1, H), dtype=dt)
    dh_n = np.zeros((B, H), dtype=dt) if dh_n is None else np.ascontiguousarray(dh_n)
    dc = np.zeros((B, H), dtype=dt) if dc_n is None else np.array(dc_n, dtype=dt)  # (B, H), updated
    dh = np.empty((B, H), dtype=dt)  # (B, H): dh_{t-1} = da_t W_hh, reused by every step
    da = np.empty((T, B, 4 * H), dtype=dt)  # (T, B, 4H)
    _TIME_LOOPS[version][1](w_hh, da, dh, gates, cs, tanh_c, dh_n, dout, has_dout, dc, da, lens)
    dh0 = dh
    empty = lens == 0  # rows with no step at all: dh_n goes straight through
    if empty.any():
        dh0[empty] = dh_n[empty]
    da2 = da.reshape(T * B, 4 * H)  # (T·B, 4H)
    dw_ih = da2.T @ x.reshape(T * B, I)  # (4H, I): one GEMM over the sequence
    dw_hh = da2.T @ hs[:T].reshape(T * B, H)  # (4H, H): h_{t-1} for every step
    db = da2.sum(axis=0)  # (4H,)
    dx = (da2 @ w_ih).reshape(T, B, I)
    return dx, dh0, dc, dw_ih, dw_hh, db, db.copy()


VERSIONS = {v: (partial(lstm_forward_version, v), partial(lstm_backward_version, v)) for v in _TIME_LOOPS}
DEFAULT_VERSION = 2  # version 3 is no faster (see the docstring); 2 runs wherever Numba does


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None):
    """x: (T, B, I), h0/c0: (B, H), w_ih: (4H, I), w_hh: (4H, H), b_ih/b_hh: (4H,).

    Returns out (T, B, H), (h_n, c_n), cache. The fastest version (``DEFAULT_VERSION``).
    """
    return lstm_forward_version(DEFAULT_VERSION, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths)


def lstm_backward(dout, dh_n, dc_n, cache):
    """dout: (T, B, H) or None; dh_n, dc_n: (B, H) or None.

    Returns dx (T, B, I), dh0, dc0 (B, H), dw_ih, dw_hh, db_ih, db_hh.
    """
    return lstm_backward_version(DEFAULT_VERSION, dout, dh_n, dc_n, cache)
