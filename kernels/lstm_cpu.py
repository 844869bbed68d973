"""The CPU LSTM's fused pointwise steps (Numba): ops/lstm.py's reference steps, compiled.

They plug into the one recurrence driver (minis2s/ops/recurrent.py), which runs the GEMMs, the
time loop, padding and the weight gradients for every implementation; here is only what runs
between the GEMMs, one fused pass per step instead of the reference's dozen NumPy calls:

    forward step    a = xg_t + hg + b;  i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
                    c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)     (padded rows keep their state)
    backward step   dh = dh_t + dout_t;  dc = dc_t + dh o (1 - tanh²c_t)
                    da_i = dc g i(1-i);  da_f = dc c_{t-1} f(1-f);  da_g = dc i (1-g²);
                    da_o = dh tanh c_t o(1-o);  dc_{t-1} = dc f

Same arguments as ``ops.lstm_forward_step`` / ``lstm_backward_step`` (the reference they are
checked against, float64 within 1e-12 and float32 within 1e-5: tests/test_kernels_cpu.py), so
``ops.lstm_forward(..., steps=VERSIONS[v])`` runs version v and fills the same cache.

Versions (llm.c style; ``VERSIONS`` maps number -> ``ops.Steps``; the tests check them all):

    1  fused kernels calling ``math.tanh``: a scalar libm call, so the gate loop does not
       vectorise (the pointwise pass costs about twice the step's GEMM).
    2  the same kernels with kernels/activations_cpu.py's vectorisable tanh and sigmoid.
    3  version 2's kernels with the driver's two time loops compiled whole (``time_loops`` with
       kernels/blas_cpu.py's direct cblas GEMM): a sequence is one Numba call, no interpreter
       between steps. Only where that cblas is found (``blas_cpu.AVAILABLE``); its threads are
       whatever the caller's ``minis2s.threads.blas_threads`` scope set on that same library.
    4  version 2's loops and backward kernel, the forward kernel on kernels/activations_cpu.py's
       ``tanh_rational`` / ``sigmoid_rational``: in float32 Eigen's rational tanh (≤ 7 ulp against
       version 2's ≤ 2; no exp), which halves the forward kernel's time at (B, H) = (128, 384);
       float64 is version 2's math exactly.

The default is version 4, the fastest measured (benchmarks/NOTES.md, issue 15, 2026-12-03: G2P
training 849 words/s against version 2's 816; (T, B, H, L) = (32, 64, 512, 1) 116.9 ms against
128.2; elsewhere within noise). Version 3 measured no faster than 2: the time is in the small
step GEMMs, not between them. The loops inside the kernels are written for
LLVM's vectoriser: zero-based ranges over views, few arrays written per loop (it gives up when it
cannot check them all for overlap).
"""
from __future__ import annotations

import math

from minis2s.kernels import blas_cpu
from minis2s.kernels.activations_cpu import sigmoid, sigmoid_rational, tanh, tanh_rational
from numba import njit
from numba.extending import register_jitable

from minis2s.ops.recurrent import Steps, time_loops

JIT = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}


# ---- fused pointwise kernels ------------------------------------------------------------------
#   forward:   a = xg + hg + b;  i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
#              c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
#   backward:  dh = dh_t + dout_t;          dc = dc_t + dh o (1 - tanh²c_t)
#              da_i = dc g i(1-i);  da_f = dc c_{t-1} f(1-f);  da_g = dc i (1-g²);  da_o = dh tanh c_t o(1-o)
#              dc_{t-1} = dc f               (dh_{t-1} = da W_hh is the GEMM after the kernel)


def _make_forward_kernel(tanh_fn, sigmoid_fn):
    def forward_step(t, hg, hs, xg, out, lengths, bias, cs, tanh_c):
        """Step t, ops.lstm_forward_step's arguments. xg (T, B, 4H): x W_ihᵀ, overwritten row by
        row with the activated gates; hg (B, 4H): h_{t-1} W_hhᵀ; bias (4H,): b_ih + b_hh; reads
        hs[t], cs[t], writes hs[t+1], cs[t+1], tanh_c[t], out[t]."""
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
    def backward_step(t, dh, dc, dh_n, dout, has_dout, da, _dhg, lengths, hs, gates, cs, tanh_c):
        """Step t, ops.lstm_backward_step's arguments. dh (B, H): dh_t from the GEMM of step t+1
        (row b reads dh_n instead at its last step t = lengths[b]-1); dc (B, H): dc_t in,
        dc_{t-1} out; writes da[t] (B, 4H), both dxg_t and dhg_t."""
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


@register_jitable
def _sigmoid_libm(x):
    # register_jitable, not njit: a closure over a Dispatcher never hits Numba's on-disk cache (its
    # pickled closure cells carry a per-process uuid), so version 1 recompiled in every process
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
    4: njit(**JIT)(named(_make_forward_kernel(tanh_rational, sigmoid_rational), "lstm_forward_step_v4")),
}


# ---- the versions: each a ``Steps`` for the one driver (minis2s/ops/recurrent.py) ------------------


def versions(cell, forward_steps, backward_step):
    """{version: Steps}: the driver's Python time loop around each forward step kernel
    ({version: kernel}), and version 3, the same loops around version 2's kernel compiled whole
    with a direct cblas GEMM (only where kernels/blas_cpu.py found NumPy's cblas), named after
    ``cell`` (see ``named``)."""
    matmul = blas_cpu.matmul_into  # from Python: np.matmul with out= (no array-module lookup per step)
    out = {v: Steps.of(f"cpu v{v}", step, backward_step, time_loops(step, backward_step, matmul))
           for v, step in forward_steps.items()}
    if blas_cpu.AVAILABLE:
        # the loops capture the kernels' Python functions, made jitable, not their Dispatchers:
        # a closure over a Dispatcher never hits Numba's on-disk cache (see _sigmoid_libm)
        inner = (register_jitable(forward_steps[2].py_func), register_jitable(backward_step.py_func))
        loops = tuple(njit(**JIT)(named(f, f"{cell}_{f.__name__}_v3")) for f in time_loops(*inner, matmul))
        out[3] = Steps.of("cpu v3", forward_steps[2], backward_step, loops)
    return out


VERSIONS = versions("lstm", _FORWARD_STEP, _BACKWARD_STEP)
DEFAULT_VERSION = 4  # the fastest measured (see the docstring); like 2, it runs wherever Numba does


if __name__ == "__main__":  # python -m minis2s.kernels.lstm_cpu: every version against the reference
    from minis2s.kernels.harness import report

    report("lstm", VERSIONS)
