"""The CUDA C kernel set on CuPy arrays: the GPU path of the LSTM.

``CudaCKernels`` compiles kernels/lstm_pointwise.cu (and, with ``persistent=True``,
kernels/lstm_persistent.cu) with NVRTC through ``cupy.RawModule`` and launches them; the
recurrence driver (minis2s/ops/recurrent.py) runs it through ``kernel_set_steps``
(kernels/kernel_set.py): cuBLAS GEMMs with the fused pointwise kernels between them, the cuDNN
paper's recipe (Appleyard et al. 2016), as haste does. With ``persistent=True`` each unpadded
time loop is one launch of the persistent kernel, which keeps its slice of W_hh in shared memory
and fills the same cache as the per-step path.

CuPy is imported only when a kernel set is made; without it the error says what to install.
Legend: T time, B batch, I input features, H hidden, 4H the gates (i, f, g, o).
"""
from __future__ import annotations

import math

from minis2s.kernels.kernel_set import PACK_BYTES, cuda_source, kernel_set_steps

from minis2s.backend import get_backend

BLOCK = 256  # threads per block, pointwise kernels
PERSISTENT_THREADS = 256  # threads per block, persistent kernel


def _cupy():
    """CuPy and a GPU, or a RuntimeError naming what is missing (minis2s.backend's message)."""
    return get_backend("cuda")


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


def default_steps():
    """ops.Steps of the CUDA C kernel set (compiled once per process), for CuPy arrays."""
    if "cuda_c" not in _DEFAULT:
        _DEFAULT["cuda_c"] = kernel_set_steps(CudaCKernels(), "cuda_c")
    return _DEFAULT["cuda_c"]
