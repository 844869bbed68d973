"""The LSTM on the GPU: cuBLAS GEMMs + the fused CUDA C pointwise kernels, through CuPy.

``lstm_forward`` / ``lstm_backward`` have the signatures of ``minis2s.ops.lstm_forward`` /
``lstm_backward`` (the float64 reference, which they are tested against) and follow the cuDNN
paper's recipe (Appleyard et al. 2016), as haste does:

forward
    xg = x W_ihᵀ + (b_ih + b_hh)           one GEMM for all T steps, both biases folded in
    for t:  hg = h_{t-1} W_hhᵀ              the four gates as one GEMM, W_hhᵀ pre-transposed
            fused pointwise(xg_t, hg, c_{t-1}) -> h_t, c_t and the cache (gates, tanh c_t)
backward
    for t reversed:  fused pointwise backward -> da_t (= dxg_t = dhg_t), dc_{t-1}
                     dh_{t-1} = da_t W_hh    one GEMM
    dW_ih = daᵀ x,  dW_hh = daᵀ h_{<T},  dx = da W_ih     three GEMMs over the whole sequence

or, with ``CudaCKernels(persistent=True)``, each time loop is one launch of the persistent
kernel (kernels/lstm_persistent.cu), which keeps its slice of W_hh in shared memory; it reads and
writes the same cache as the per-step path, and the weight GEMMs after the loop are the same.

The driver is written against an array module (``minis2s.backend.array_module``) and a *kernel
set* (the interface in kernels/cuda_host.py): CUDA C through CuPy here (``CudaCKernels``),
Numba CUDA (kernels/lstm_numba_cuda.py), or the CUDA C host loops on NumPy arrays (the CPU
tests). CuPy is imported only when a CuPy kernel set is made; without it the error says what to
install.

Legend: T time, B batch, I input features, H hidden, 4H the gates (i, f, g, o).
"""
from __future__ import annotations

import math

from minis2s.kernels.cuda_host import KERNEL_DIR, PACK_BYTES
from minis2s.backend import array_module, get_backend
from minis2s.ops.recurrent import length_mask

BLOCK = 256  # threads per block, pointwise kernels
PERSISTENT_THREADS = 256  # threads per block, persistent kernel


def _cupy():
    """CuPy and a GPU, or a RuntimeError naming what is missing (minis2s.backend's message)."""
    return get_backend("cuda")


def cuda_source(name: str) -> str:
    """The source of kernels/<name> with ``#include "lstm_cell.cuh"`` pasted in.

    Inlining the header (instead of an -I option) makes CuPy's compile cache, keyed on the
    source text, see edits to the header too.
    """
    text = (KERNEL_DIR / name).read_text()
    header = (KERNEL_DIR / "lstm_cell.cuh").read_text().replace("#pragma once", "")
    return text.replace('#include "lstm_cell.cuh"', header)


def persistent_smem_elems(B: int, H: int, HS: int, NT: int, backward: bool = False) -> int:
    """Dynamic shared memory per block of the persistent kernel, in elements.

    The Python copy of ``PersistentShape::smem_elems`` in lstm_persistent.cu (a test checks
    they agree): W slice 4·HS·H + the staged vector B·K + partial sums ntasks·ksplit + the
    state B·HS, where forward K = H (h_{t-1}), R = 4·HS; backward K = 4H (da_{t+1}), R = HS.
    """
    R, K = (HS, 4 * H) if backward else (4 * HS, H)
    ntasks = B * R
    ksplit = max(1, NT // ntasks)
    return 4 * HS * H + B * K + ntasks * ksplit + B * HS


def persistent_tiling(H: int, n_sm: int) -> tuple[int, int]:
    """(HS, blocks): hidden units per block so that there is at most one block per SM."""
    HS = math.ceil(H / n_sm)
    return HS, math.ceil(H / HS)


class CudaCKernels:
    """The CUDA C kernel set on CuPy arrays: cupy.RawModule compiles the .cu files (NVRTC).

    version: 2 (16-byte loads, used when H % PACK == 0 and the arrays are 16-byte aligned,
    else version 1) or 1. persistent: also compile lstm_persistent.cu and run the forward and
    the backward sequence as one cooperative launch each (``sequence_forward`` /
    ``sequence_backward``) when the block's share of the weights and state fits in shared
    memory; otherwise that direction runs the per-step path, and ``last_path`` says which ran.

    RawKernel checks no arguments: every scalar is passed as cupy.int32 and every array is
    checked here for dtype, device and C-contiguity before the launch.
    """

    def __init__(self, version: int = 2, persistent: bool = False):
        cp = _cupy()
        if version not in (1, 2):
            raise ValueError(f"version must be 1 or 2, got {version}")
        self.cp, self.version = cp, version
        self._pointwise = cp.RawModule(code=cuda_source("lstm_pointwise.cu"))
        self._persistent = None
        self.sequence_forward = self.sequence_backward = None
        self.last_path = {}  # direction -> "persistent" or why the per-step path ran instead
        if persistent:
            self._persistent = cp.RawModule(code=cuda_source("lstm_persistent.cu"),
                                            enable_cooperative_groups=True)
            self.sequence_forward = self._sequence_forward
            self.sequence_backward = self._sequence_backward

    def _check(self, arrays):
        cp = self.cp
        dtype = arrays[0].dtype
        for a in arrays:
            if not isinstance(a, cp.ndarray):
                raise TypeError(f"CUDA C kernels take CuPy arrays, got {type(a).__name__}")
            if a.dtype != dtype or dtype.char not in "fd":
                raise TypeError(f"CUDA C kernels take float32 or float64 arrays of one dtype, got {a.dtype} and {dtype}")
            if not a.flags.c_contiguous:
                raise ValueError("CUDA C kernels need C-contiguous arrays (RawKernel checks no strides)")
        return "f32" if dtype.char == "f" else "f64"

    def _launch_pointwise(self, direction, arrays, B, H):
        sfx = self._check(arrays)
        P = PACK_BYTES // arrays[0].dtype.itemsize
        version = self.version
        if version == 2 and (H % P or any(a.data.ptr % PACK_BYTES for a in arrays)):
            version = 1
        count = B * H // (P if version == 2 else 1)
        fn = self._pointwise.get_function(f"lstm_pointwise_{direction}{version}_{sfx}")
        fn(((count + BLOCK - 1) // BLOCK,), (BLOCK,), (*arrays, self.cp.int32(count), self.cp.int32(H)))

    def pointwise_forward(self, xg, hg, c_prev, h, c, gates, tanh_c):
        B, H = c_prev.shape
        self._launch_pointwise("forward", (xg, hg, c_prev, h, c, gates, tanh_c), B, H)

    def pointwise_backward(self, dh, dc_next, gates, c_prev, tanh_c, da, dc_prev):
        B, H = dh.shape
        self._launch_pointwise("backward", (dh, dc_next, gates, c_prev, tanh_c, da, dc_prev), B, H)

    def persistent_plan(self, B: int, H: int, itemsize: int, backward: bool = False) -> dict:
        """The persistent kernel's launch for (B, H) on this GPU, and whether it fits."""
        dev = self.cp.cuda.Device()
        n_sm = dev.attributes["MultiProcessorCount"]
        limit = dev.attributes["MaxSharedMemoryPerBlockOptin"]
        HS, blocks = persistent_tiling(H, n_sm)
        smem = persistent_smem_elems(B, H, HS, PERSISTENT_THREADS, backward) * itemsize
        return {"HS": HS, "blocks": blocks, "threads": PERSISTENT_THREADS, "smem_bytes": smem,
                "smem_limit": limit, "fits": smem <= limit}

    def _launch_persistent(self, direction, arrays, T, B, H):
        cp = self.cp
        sfx = self._check(arrays)
        plan = self.persistent_plan(B, H, arrays[0].dtype.itemsize, backward=direction == "backward")
        self.last_path[direction] = "persistent" if plan["fits"] else "per-step (shared memory)"
        if not plan["fits"]:
            return False
        fn = self._persistent.get_function(f"lstm_persistent_{direction}1_{sfx}")
        if plan["smem_bytes"] > 48 * 1024:  # beyond 48 KiB needs the opt-in attribute
            fn.max_dynamic_shared_size_bytes = plan["smem_bytes"]
        fn((plan["blocks"],), (plan["threads"],),
           (*arrays, cp.int32(T), cp.int32(B), cp.int32(H), cp.int32(plan["HS"])), shared_mem=plan["smem_bytes"])
        return True

    def _sequence_forward(self, xg, w_hh, h_all, c_all, gates, tanh_c):
        T, B, G = xg.shape
        return self._launch_persistent("forward", (xg, w_hh, h_all, c_all, gates, tanh_c), T, B, G // 4)

    def _sequence_backward(self, dout, dh_n, dc_n, gates, c_all, tanh_c, w_hh, da, dh0, dc0):
        T, B, H = dout.shape
        return self._launch_persistent("backward", (dout, dh_n, dc_n, gates, c_all, tanh_c, w_hh, da, dh0, dc0),
                                       T, B, H)


_DEFAULT = {}


def default_kernels(xp):
    """The CUDA C kernel set (compiled once per process) for CuPy arrays."""
    if xp.__name__ != "cupy":
        raise TypeError(
            "minis2s.kernels.lstm_cupy runs on CuPy arrays; for NumPy arrays pass kernels= (a host or "
            "simulator kernel set) or use minis2s.ops.lstm_forward"
        )
    if "cuda_c" not in _DEFAULT:
        _DEFAULT["cuda_c"] = CudaCKernels()
    return _DEFAULT["cuda_c"]


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, *, kernels=None):
    """x: (T, B, I), h0/c0: (B, H), w_ih: (4H, I), w_hh: (4H, H), b_ih/b_hh: (4H,).

    Returns out (T, B, H), (h_n, c_n), cache — as minis2s.ops.lstm_forward. ``kernels``: a
    kernel set (default: CudaCKernels for CuPy arrays). A kernel set with ``sequence_forward``
    (the persistent kernel) runs the whole loop when there are no ``lengths`` (it has no
    padding mask) and it reports that it ran (True); otherwise the per-step path runs.
    """
    xp = array_module(x)
    kernels = kernels or default_kernels(xp)
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    for name, a in (("h0", h0), ("c0", c0), ("w_ih", w_ih), ("w_hh", w_hh), ("b_ih", b_ih), ("b_hh", b_hh)):
        if a.dtype != dt:
            raise TypeError(f"{name} has dtype {a.dtype}, x has {dt}")
    w_hh_t = xp.ascontiguousarray(w_hh.T)  # (H, 4H): pre-transposed once per sequence
    xg = (xp.ascontiguousarray(x).reshape(T * B, I) @ w_ih.T + (b_ih + b_hh)).reshape(T, B, 4 * H)
    h_all = xp.empty((T + 1, B, H), dtype=dt)  # h_all[t] = h_{t-1}: h0, h_1, ..., h_T
    c_all = xp.empty((T + 1, B, H), dtype=dt)
    h_all[0] = h0
    c_all[0] = c0
    gates = xp.empty((T, B, 4 * H), dtype=dt)  # activated (i, f, g, o): the cache
    tanh_c = xp.empty((T, B, H), dtype=dt)
    mask = None if lengths is None else length_mask(lengths, T, dt, xp)  # (T, B, 1)
    if (kernels.sequence_forward is not None and mask is None
            and kernels.sequence_forward(xg, xp.ascontiguousarray(w_hh), h_all, c_all, gates, tanh_c)):
        out = h_all[1:]  # one launch did every step
    else:
        out = h_all[1:] if mask is None else xp.empty((T, B, H), dtype=dt)
        hg = xp.empty((B, 4 * H), dtype=dt)
        for t in range(T):
            xp.matmul(h_all[t], w_hh_t, out=hg)  # (B, 4H)
            kernels.pointwise_forward(xg[t], hg, c_all[t], h_all[t + 1], c_all[t + 1], gates[t], tanh_c[t])
            if mask is not None:  # padded rows keep their state: s_t = m·s_new + (1-m)·s_{t-1}
                m = mask[t]
                out[t] = m * h_all[t + 1]
                h_all[t + 1] = out[t] + (1.0 - m) * h_all[t]
                c_all[t + 1] = m * c_all[t + 1] + (1.0 - m) * c_all[t]
    cache = (x, w_ih, w_hh, h_all, c_all, gates, tanh_c, mask, kernels)
    return out, (h_all[T].copy(), c_all[T].copy()), cache


def lstm_backward(dout, dh_n, dc_n, cache):
    """dout: (T, B, H) or None; dh_n, dc_n: (B, H) or None.

    Returns dx (T, B, I), dh0, dc0 (B, H), dw_ih, dw_hh, db_ih, db_hh — as
    minis2s.ops.lstm_backward.
    """
    x, w_ih, w_hh, h_all, c_all, gates, tanh_c, mask, kernels = cache
    xp = array_module(h_all)
    T, B, H = tanh_c.shape
    dt = h_all.dtype
    dh = xp.zeros((B, H), dtype=dt) if dh_n is None else xp.array(dh_n, dtype=dt)  # own copies
    dc = xp.zeros((B, H), dtype=dt) if dc_n is None else xp.array(dc_n, dtype=dt)
    da = xp.empty((T, B, 4 * H), dtype=dt)  # dxg = dhg, every step
    if kernels.sequence_backward is not None and mask is None:  # the persistent kernel, one launch
        dout_c = xp.zeros((T, B, H), dtype=dt) if dout is None else xp.ascontiguousarray(dout, dtype=dt)
        dh0, dc0 = xp.empty((B, H), dtype=dt), xp.empty((B, H), dtype=dt)
        if kernels.sequence_backward(dout_c, dh, dc, gates, c_all, tanh_c, xp.ascontiguousarray(w_hh), da, dh0, dc0):
            return _weight_gradients(x, w_ih, h_all, da, dh0, dc0)
    dc_prev = xp.empty((B, H), dtype=dt)
    dnew_h = xp.empty((B, H), dtype=dt)
    for t in reversed(range(T)):
        if dout is None:
            dnew_h[...] = dh
        else:
            xp.add(dh, dout[t], out=dnew_h)  # the output and the carried state both read h_t
        dnew_c = dc
        if mask is not None:  # the gradient splits between the new state and the carried one
            m = mask[t]
            carried_h, carried_c = (1.0 - m) * dh, (1.0 - m) * dc
            dnew_h *= m
            dnew_c = m * dc
        kernels.pointwise_backward(dnew_h, dnew_c, gates[t], c_all[t], tanh_c[t], da[t], dc_prev)
        xp.matmul(da[t], w_hh, out=dh)  # dh_{t-1} = da_t W_hh, (B, H)
        dc, dc_prev = dc_prev, dc
        if mask is not None:
            dh += carried_h
            dc += carried_c
    return _weight_gradients(x, w_ih, h_all, da, dh, dc)


def _weight_gradients(x, w_ih, h_all, da, dh0, dc0):
    """After the time loop: dW_ih = daᵀ x, dW_hh = daᵀ h_{<T}, dx = da W_ih (three GEMMs)."""
    xp = array_module(da)
    T, B, G = da.shape
    da2 = da.reshape(T * B, G)  # (T·B, 4H)
    dw_ih = da2.T @ xp.ascontiguousarray(x).reshape(T * B, -1)  # (4H, I)
    dw_hh = da2.T @ h_all[:T].reshape(T * B, -1)  # (4H, H)
    db = da2.sum(axis=0)
    dx = (da2 @ w_ih).reshape(T, B, -1)  # (T, B, I)
    return dx, dh0, dc0, dw_ih, dw_hh, db, db.copy()
