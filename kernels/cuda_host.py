"""The CUDA C kernels on a machine without a GPU: nvcc builds, host twins, resource usage.

Test tooling (the library never imports it). Every ``.cu`` file in ``kernels/`` keeps its
per-element math in ``__host__ __device__`` functions and exports ``extern "C"`` host loops
(``*_host_f32`` / ``*_host_f64``) that run the same element bodies as the ``__global__``
kernels. This module

* compiles a ``.cu`` file with nvcc into a shared library (``build_shared_library``),
* wraps the host loops as a kernel set (``HostKernels``; the interface: kernels/kernel_set.py),
  so the recurrence driver runs the CUDA C math on the CPU with NumPy arrays
  (tests/test_cuda_c_host.py),
* reads ``nvcc --resource-usage`` (registers, spills, static shared memory per kernel), which is
  what the compiler can say about a kernel's fit on the chip without running it.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from minis2s.kernels.kernel_set import KERNEL_DIR, PACK_BYTES

NVCC_ARCH = "sm_90"  # H100


def nvcc_path() -> str | None:
    """The nvcc executable, or None."""
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").exists():
            return str(Path(home) / "bin" / "nvcc")
    return None


def _nvcc() -> str:
    nvcc = nvcc_path()
    if nvcc is None:
        raise RuntimeError("nvcc not found (PATH, $CUDA_HOME, /usr/local/cuda): install the CUDA toolkit")
    return nvcc


def cu_files() -> list[Path]:
    """Every CUDA C source in kernels/."""
    return sorted(KERNEL_DIR.glob("*.cu"))


def build_shared_library(cu_file, out_dir) -> Path:
    """``nvcc -O2 -shared -Xcompiler -fPIC -arch=sm_90 cu_file -o out_dir/<stem>.so``."""
    cu_file = Path(cu_file)
    out = Path(out_dir) / f"{cu_file.stem}.so"
    cmd = [_nvcc(), "-O2", "-shared", "-Xcompiler", "-fPIC", f"-arch={NVCC_ARCH}", str(cu_file), "-o", str(out)]
    _run(cmd)
    return out


_USAGE = re.compile(r"Function properties for (\w+)\s*\n\s*(\d+) bytes stack frame, (\d+) bytes spill stores, "
                    r"(\d+) bytes spill loads\s*\n.*?Used (\d+) registers(?:, used \d+ barriers)?(.*?)\n", re.DOTALL)


def _parse_usage(text: str) -> dict:
    usage = {}
    for name, stack, spill_st, spill_ld, regs, rest in _USAGE.findall(text):
        smem = re.search(r"(\d+) bytes smem", rest)
        usage[name] = {
            "registers": int(regs),
            "stack_bytes": int(stack),
            "spill_store_bytes": int(spill_st),
            "spill_load_bytes": int(spill_ld),
            "static_smem_bytes": int(smem.group(1)) if smem else 0,
        }
    return usage


def _run(cmd) -> str:
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{run.stderr}")
    return run.stdout + run.stderr


def resource_usage(cu_file) -> dict:
    """``nvcc -arch=sm_90 --resource-usage -c``: kernel name -> registers, spills, static smem.

    Raises RuntimeError (with nvcc's stderr) when the file does not compile. Dynamic shared
    memory (the persistent kernel's weights) is sized at launch and does not appear here.
    """
    return _parse_usage(_run([_nvcc(), f"-arch={NVCC_ARCH}", "--resource-usage", "-c", str(cu_file),
                              "-o", os.devnull]))


def ptx_resource_usage(ptx: str, workdir) -> dict:
    """The same figures for PTX text (e.g. a Numba kernel's ``cuda.compile_ptx``), via ptxas."""
    ptxas = Path(_nvcc()).with_name("ptxas")
    src = Path(workdir) / "kernel.ptx"
    src.write_text(ptx)
    return _parse_usage(_run([str(ptxas) if ptxas.exists() else "ptxas", f"-arch={NVCC_ARCH}", "--verbose",
                              str(src), "-o", os.devnull]))


def _suffix(dtype) -> str:
    d = np.dtype(dtype)
    if d == np.float32:
        return "f32"
    if d == np.float64:
        return "f64"
    raise TypeError(f"the CUDA C kernels take float32 or float64, got {d}")


def _ptr(a, dtype):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
        raise TypeError(f"host kernels need C-contiguous {dtype} NumPy arrays, got "
                        f"{type(a).__name__} {getattr(a, 'dtype', '')} "
                        f"contiguous={getattr(getattr(a, 'flags', None), 'c_contiguous', None)}")
    return ctypes.c_void_p(a.ctypes.data)


def pack_size(dtype) -> int:
    return PACK_BYTES // np.dtype(dtype).itemsize


class HostKernels:
    """The CUDA C kernel set, run by its host loops through ctypes (NumPy arrays, on the CPU).

    pointwise: the library built from lstm_pointwise.cu; version 1 or 2 (2 needs H % PACK == 0
    and 16-byte aligned arrays, else the call raises: the host twin checks what the GPU
    launcher checks before choosing version 2).
    persistent: the library built from lstm_persistent.cu, or None; HS hidden units per block
    and NT threads per block are the persistent kernel's tiling.
    """

    def __init__(self, dtype, pointwise_lib, version: int = 1, persistent_lib=None, HS: int = 4,
                 NT: int = 256):
        self.dtype = np.dtype(dtype)
        sfx = _suffix(self.dtype)
        if version not in (1, 2):
            raise ValueError(f"version must be 1 or 2, got {version}")
        self.version = version
        lib = ctypes.CDLL(str(pointwise_lib))
        self._fwd = getattr(lib, f"lstm_pointwise_forward{version}_host_{sfx}")
        self._bwd = getattr(lib, f"lstm_pointwise_backward{version}_host_{sfx}")
        self.sequence_forward = self.sequence_backward = None
        if persistent_lib is not None:
            plib = ctypes.CDLL(str(persistent_lib))
            self._seq_fwd = getattr(plib, f"lstm_persistent_forward1_host_{sfx}")
            self._seq_bwd = getattr(plib, f"lstm_persistent_backward1_host_{sfx}")
            self.HS, self.NT = HS, NT
            self.sequence_forward, self.sequence_backward = self._sequence_forward, self._sequence_backward

    def _count(self, arrays, B, H):
        if self.version == 1:
            return B * H
        P = pack_size(self.dtype)
        if H % P or any(a.ctypes.data % PACK_BYTES for a in arrays):
            raise ValueError(f"version 2 needs H % {P} == 0 and 16-byte aligned arrays (H={H})")
        return B * H // P

    def pointwise_forward(self, xg, hg, c_prev, h, c, gates, tanh_c):
        B, H = c_prev.shape
        arrays = (xg, hg, c_prev, h, c, gates, tanh_c)
        ptrs = [_ptr(a, self.dtype) for a in arrays]
        self._fwd(*ptrs, ctypes.c_int(self._count(arrays, B, H)), ctypes.c_int(H))

    def pointwise_backward(self, dh, dc_next, gates, c_prev, tanh_c, da, dc_prev):
        B, H = dh.shape
        arrays = (dh, dc_next, gates, c_prev, tanh_c, da, dc_prev)
        ptrs = [_ptr(a, self.dtype) for a in arrays]
        self._bwd(*ptrs, ctypes.c_int(self._count(arrays, B, H)), ctypes.c_int(H))

    def _sequence_forward(self, xg, w_hh, h_all, c_all, gates, tanh_c):
        T, B, G = xg.shape
        ptrs = [_ptr(a, self.dtype) for a in (xg, w_hh, h_all, c_all, gates, tanh_c)]
        self._seq_fwd(*ptrs, *(ctypes.c_int(v) for v in (T, B, G // 4, self.HS, self.NT)))
        return True

    def _sequence_backward(self, dout, dh_n, dc_n, gates, c_all, tanh_c, w_hh, da, dh0, dc0):
        T, B, H = dout.shape
        ptrs = [_ptr(a, self.dtype) for a in (dout, dh_n, dc_n, gates, c_all, tanh_c, w_hh, da, dh0, dc0)]
        self._seq_bwd(*ptrs, *(ctypes.c_int(v) for v in (T, B, H, self.HS, self.NT)))
        return True


def persistent_smem_elems_host(persistent_lib, B: int, H: int, HS: int, NT: int, backward: bool = False) -> int:
    """The C side's shared-memory size formula (to test the Python copy in lstm_cuda_c)."""
    fn = ctypes.CDLL(str(persistent_lib)).lstm_persistent_smem_elems
    fn.restype = ctypes.c_long
    return int(fn(*(ctypes.c_int(v) for v in (B, H, HS, NT, int(backward)))))
