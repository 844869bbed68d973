"""Issue 15, item 3: would MKL's packed GEMM speed up the recurrent step GEMM?

Per-call µs of one step GEMM out (M, N) = a (M, K) @ b (K, N), float32, one thread: NumPy's
OpenBLAS (np.matmul), MKL's cblas_sgemm, and MKL's packed B (cblas_sgemm_pack once, as W_hh would
be packed once per sequence, then cblas_sgemm_compute per step). Best of 5 x 500 calls; every
call through ctypes (~1 µs each). Needs the PyPI ``mkl`` wheel (libmkl_rt.so.3 in the venv):

    pip install mkl && OPENBLAS_NUM_THREADS=1 python benchmarks/mkl_packed_gemm.py

Figures: benchmarks/NOTES.md (issue 15).
"""
import ctypes
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

mkl = ctypes.CDLL(os.path.join(sys.prefix, "lib", "libmkl_rt.so.3"))
mkl.MKL_Set_Num_Threads(1)
RowMajor, NoTrans, Trans, Packed = 101, 111, 112, 151
BMatrix = 162
c_int, c_float, c_void_p, c_size_t = ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_size_t
mkl.cblas_sgemm.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, c_float, c_void_p, c_int, c_void_p, c_int, c_float, c_void_p, c_int]
mkl.cblas_sgemm_pack_get_size.restype = c_size_t
mkl.cblas_sgemm_pack_get_size.argtypes = [c_int, c_int, c_int, c_int]
mkl.cblas_sgemm_pack.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, c_float, c_void_p, c_int, c_void_p]
mkl.cblas_sgemm_compute.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, c_void_p, c_int, c_void_p, c_int, c_float, c_void_p, c_int]


def p(a):
    return a.ctypes.data


def timeit(f, n=2000):
    for _ in range(50): f()
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n): f()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def measure(M, K, N):
    """One shape: (µs per call, relative error) for OpenBLAS, MKL, MKL packed."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    out = np.empty((M, N), np.float32)
    ref = a.astype(np.float64) @ b
    size = mkl.cblas_sgemm_pack_get_size(BMatrix, M, N, K)
    raw = np.empty(size + 64, np.uint8)
    buf = raw.ctypes.data + (-raw.ctypes.data) % 64  # 64-byte aligned
    mkl.cblas_sgemm_pack(RowMajor, BMatrix, NoTrans, M, N, K, 1.0, p(b), N, buf)
    calls = {
        "openblas": lambda: np.matmul(a, b, out=out),
        "mkl": lambda: mkl.cblas_sgemm(RowMajor, NoTrans, NoTrans, M, N, K, 1.0, p(a), K, p(b), N, 0.0, p(out), N),
        "mkl packed": lambda: mkl.cblas_sgemm_compute(RowMajor, NoTrans, Packed, M, N, K, p(a), K, buf, N, 0.0,
                                                      p(out), N),
    }
    result = {}
    with threadpool_limits(1, user_api="blas"):
        for name, call in calls.items():
            call()
            err = float(np.abs(out - ref).max() / np.abs(ref).max())
            result[name] = (timeit(call, 500), err)
    return result


for M, K, N in [(16, 128, 512), (64, 256, 1024), (64, 512, 2048), (128, 384, 1536)]:
    gf = 2 * M * K * N / 1e3
    cells = [f"{name} {us:7.1f} us ({gf / us:5.1f} GF/s, err {err:.0e})" for name, (us, err) in measure(M, K, N).items()]
    print(f"({M},{K})x({K},{N}): " + "  ".join(cells))
