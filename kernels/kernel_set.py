"""The LSTM steps of a CUDA kernel set, for the one recurrence driver (minis2s/ops/recurrent.py).

A *kernel set* is the LSTM's per-element math compiled for the GPU, in three forms with one
interface:

    CudaCKernels    CUDA C through CuPy (kernels/lstm_cuda_c.py): what the GPU path runs
    NumbaKernels    Numba CUDA (kernels/lstm_numba_cuda.py): CuPy arrays, or NumPy ones under
                    Numba's CUDA simulator (tests/cudasim)
    HostKernels     the CUDA C host twins through ctypes, on NumPy arrays (kernels/cuda_host.py:
                    the CPU tests of the CUDA C math)

Interface (all arrays C-contiguous, of one dtype):

    pointwise_forward(xg, hg, c_prev, h, c, gates, tanh_c)       xg, hg, gates (B, 4H); the rest (B, H)
    pointwise_backward(dh, dc_next, gates, c_prev, tanh_c, da, dc_prev)
    sequence_forward(xg, w_hh, h_all, c_all, gates, tanh_c)      or None: the persistent kernel
    sequence_backward(dout, dh_n, dc_n, gates, c_all, tanh_c, w_hh, da, dh0, dc0)   or None
      (the sequence methods return True when they ran, False to hand the sequence to the
      per-step path; they have no padding mask, so they run only when no row is padded)

Each element's inputs are read before its outputs are written, by the thread that owns the
element, so ``gates`` may be ``xg`` itself: the steps below write the gates over x_t W_ihᵀ, as
every implementation of the driver does.

``kernel_set_steps(kernels)`` makes the ``ops.Steps`` that runs a kernel set: the driver's GEMMs
(cuBLAS through CuPy, NumPy's BLAS for NumPy arrays) with the kernel set's pointwise passes
between them, padding applied around them (``ops.lstm_received`` and a where per state), and the
persistent kernel, when the set has one, running each whole unpadded sequence in one launch.
"""
from __future__ import annotations

from pathlib import Path

from minis2s.backend import array_module
from minis2s.ops.lstm import lstm_received
from minis2s.ops.recurrent import Steps, live_rows, time_loops

KERNEL_DIR = Path(__file__).resolve().parent  # the .cu and .cuh files
PACK_BYTES = 16  # version 2 of the CUDA C kernels moves 16 bytes per load (llm.c's Packed128)


def cuda_source(name: str) -> str:
    """The source of kernels/<name> with ``#include "lstm_cell.cuh"`` pasted in.

    Inlining the header (instead of an -I option) makes CuPy's compile cache, keyed on the
    source text, see edits to the header too.
    """
    text = (KERNEL_DIR / name).read_text()
    header = (KERNEL_DIR / "lstm_cell.cuh").read_text().replace("#pragma once", "")
    return text.replace('#include "lstm_cell.cuh"', header)


def kernel_set_steps(kernels, name: str | None = None) -> Steps:
    """ops.Steps running ``kernels`` (a kernel set, above) for the LSTM cell type."""

    def forward_step(t, hg, hs, xg, out, lengths, bias, cs, tanh_c):
        xp = array_module(hg)
        a = xg[t]  # (B, 4H): x_t W_ihᵀ, then the gates
        a += bias
        kernels.pointwise_forward(a, hg, cs[t], hs[t + 1], cs[t + 1], a, tanh_c[t])
        live, _ = live_rows(t, lengths)  # padded rows keep their state and emit 0
        hs[t + 1] = xp.where(live, hs[t + 1], hs[t])
        cs[t + 1] = xp.where(live, cs[t + 1], cs[t])
        out[t] = xp.where(live, hs[t + 1], 0.0)

    def backward_step(t, dh, dc, dh_n, dout, has_dout, da, _dhg, lengths, hs, gates, cs, tanh_c):
        xp = array_module(dh)
        d_h, d_c = lstm_received(t, dh, dc, dh_n, dout, has_dout, lengths)  # 0 on padded rows: da = 0
        dc_prev = xp.empty_like(dc)
        kernels.pointwise_backward(d_h, d_c, gates[t], cs[t], tanh_c[t], da[t], dc_prev)
        live, _ = live_rows(t, lengths)
        dc[...] = xp.where(live, dc_prev, dc)

    per_step_forward, per_step_backward = time_loops(forward_step, backward_step)

    def forward_loop(hs, w_hh_t, hg, gemm_rows, xg, out, lengths, bias, cs, tanh_c):
        xp = array_module(hs)
        whole = kernels.sequence_forward is not None and bool((lengths == hs.shape[0] - 1).all())
        if whole and kernels.sequence_forward(xg + bias, xp.ascontiguousarray(w_hh_t.T), hs, cs, xg, tanh_c):
            out[...] = hs[1:]  # one launch ran every step
            return
        per_step_forward(hs, w_hh_t, hg, gemm_rows, xg, out, lengths, bias, cs, tanh_c)

    def backward_loop(w_hh, dhg, dh, gemm_rows, dc, dh_n, dout, has_dout, da, _dhg, lengths, hs, gates, cs, tanh_c):
        xp = array_module(hs)
        T = hs.shape[0] - 1
        if kernels.sequence_backward is not None and bool((lengths == T).all()):
            dout_all = dout if has_dout else xp.zeros(hs[1:].shape, dtype=hs.dtype)
            dh0, dc0 = xp.empty_like(dh), xp.empty_like(dc)
            if kernels.sequence_backward(dout_all, dh_n, dc, gates, cs, tanh_c, xp.ascontiguousarray(w_hh),
                                         da, dh0, dc0):
                dh[...], dc[...] = dh0, dc0  # what the per-step loop leaves: the gradient of the state0
                return
        per_step_backward(w_hh, dhg, dh, gemm_rows, dc, dh_n, dout, has_dout, da, _dhg, lengths, hs, gates, cs, tanh_c)

    return Steps(name or type(kernels).__name__, forward_step, backward_step, forward_loop, backward_loop)
