"""``matmul_into(a, b, out)``: out = a @ b, callable from ``@njit`` code through NumPy's own OpenBLAS.

Why: a recurrence runs one small GEMM per step. Called from Python, every step pays NumPy's and
Numba's dispatch between the GEMM and the fused pointwise kernel; called from Numba, the whole
time loop is one compiled call (kernels/lstm_cpu.py and gru_cpu.py, version 3).

Called from Python, ``matmul_into`` is ``np.matmul(a, b, out=out)``. Inside ``@njit`` code it is
one ``cblas_sgemm``/``cblas_dgemm`` call (by the arrays' dtype, float32 or float64) into the
OpenBLAS library NumPy itself loaded — the same library, so the same thread pool, and
minis2s/threads.py's ``blas_threads`` scope (threadpoolctl on that library) sets the threads
these calls use too.

How it is found (``find_cblas``): threadpoolctl names the BLAS library NumPy loaded
(``threadpool_info()[i]["filepath"]``); ctypes opens it and looks up the first of ``SYMBOLS``
it exports. NumPy's wheels ship OpenBLAS built with 64-bit integers and suffixed symbols
(NumPy 2: ``scipy_cblas_sgemm64_``; NumPy 1.22-1.26: ``cblas_sgemm64_``); only those ILP64
symbols are accepted, since a wrong integer width would pass garbage sizes. Their addresses are
registered with LLVM under names of our own (``minis2s_cblas_sgemm64`` ...), which the compiled
code calls: a cached compilation then stays valid whichever suffix the next NumPy uses.
When no library or symbol is found (another BLAS, another platform), ``AVAILABLE`` is False,
``UNAVAILABLE_REASON`` says why, and nothing is registered: callers must not use it in
``@njit`` code (kernels/lstm_cpu.py leaves version 3 out of ``VERSIONS``).

Operands: 2-D arrays whose rows or columns are contiguous — a C-contiguous array, a row slice of
one (``hs[t]`` of a (T+1, B, H) array), or the transpose of one (``w_hh.T``, read with the
transpose flag). ``out`` must be C-contiguous. Shapes: a (M, K), b (K, N), out (M, N).
"""
from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload, register_jitable

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS_ORDER, CBLAS_TRANSPOSE
SYMBOLS = {  # dtype -> ILP64 symbol names NumPy's OpenBLAS may export, the first found is used
    "float32": ("scipy_cblas_sgemm64_", "cblas_sgemm64_"),
    "float64": ("scipy_cblas_dgemm64_", "cblas_dgemm64_"),
}
ALIASES = {"float32": "minis2s_cblas_sgemm64", "float64": "minis2s_cblas_dgemm64"}  # what compiled code calls


def matmul_into(a, b, out):
    """out (M, N) = a (M, K) @ b (K, N); inside ``@njit`` code, one cblas GEMM call."""
    np.matmul(a, b, out=out)


def find_cblas():
    """-> (path of NumPy's BLAS library, {dtype: (symbol, address)}, reason): the symbols found
    (both dtypes, or none) and, when none, why."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None, {}, "threadpoolctl is not installed"
    libs = [i for i in threadpool_info() if i.get("user_api") == "blas" and i.get("internal_api") == "openblas"]
    if not libs:
        return None, {}, "NumPy's BLAS is not OpenBLAS"
    path = libs[0]["filepath"]
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return path, {}, f"cannot open {path}: {e}"
    found = {}
    for dtype, names in SYMBOLS.items():
        for name in names:
            if hasattr(lib, name):
                found[dtype] = (name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
                break
    if len(found) < len(SYMBOLS):
        return path, {}, f"{path} exports none of {sorted(n for v in SYMBOLS.values() for n in v)} (ILP64 cblas)"
    return path, found, None


LIBRARY, FOUND, UNAVAILABLE_REASON = find_cblas()
AVAILABLE = UNAVAILABLE_REASON is None
for _dtype, (_, _address) in FOUND.items():
    llvm.add_symbol(ALIASES[_dtype], _address)


@intrinsic
def _cblas_gemm(typingctx, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):
    """cblas_?gemm(RowMajor, transa, transb, m, n, k, 1, a, lda, b, ldb, 0, c, ldc) on the data of
    arrays a, b, c (any layout; their data pointers are passed as they are)."""
    dtype = c.dtype
    sig = types.void(transa, transb, m, n, k, a, lda, b, ldb, c, ldc)

    def codegen(context, builder, signature, args):
        ta, tb, m_, n_, k_, a_, lda_, b_, ldb_, c_, ldc_ = args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        real = context.get_value_type(dtype)
        ptr = real.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64])
        fn = cgutils.get_or_insert_function(builder.module, fnty, ALIASES[str(dtype)])

        def data(aty, value):
            return context.make_array(aty)(context, builder, value).data

        def int64(v):
            return builder.sext(v, i64) if v.type.width < 64 else v

        def int32(v):
            return builder.trunc(v, i32) if v.type.width > 32 else v

        builder.call(fn, [ir.Constant(i32, ROW_MAJOR), int32(ta), int32(tb), int64(m_), int64(n_), int64(k_),
                          ir.Constant(real, 1.0), data(signature.args[5], a_), int64(lda_),
                          data(signature.args[7], b_), int64(ldb_), ir.Constant(real, 0.0),
                          data(signature.args[9], c_), int64(ldc_)])
        return context.get_dummy_value()

    return sig, codegen


@register_jitable
def _operand(x):
    """(transpose flag, leading dimension) for a 2-D operand whose rows or columns are contiguous.

    A single row or column has one stride that BLAS never reads; the other decides."""
    rows, cols = x.shape
    s0, s1, step = x.strides[0], x.strides[1], x.itemsize
    if s1 == step or cols <= 1:  # row-major: rows start ld elements apart
        ld = cols if rows <= 1 else s0 // step
        if rows <= 1 or (s0 % step == 0 and ld >= cols):
            return NO_TRANS, max(ld, 1)
    if s0 == step or rows <= 1:  # the transpose of a row-major (cols, rows) array
        ld = rows if cols <= 1 else s1 // step
        if cols <= 1 or (s1 % step == 0 and ld >= rows):
            return TRANS, max(ld, 1)
    raise ValueError("matmul_into: an operand has neither contiguous rows nor contiguous columns")


@overload(matmul_into, jit_options={"error_model": "numpy"})
def _matmul_into_overload(a, b, out):
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in (a, b, out)):
        return None
    if not (a.dtype == b.dtype == out.dtype and str(out.dtype) in ALIASES and AVAILABLE):
        return None

    def impl(a, b, out):
        M, K = a.shape
        N = b.shape[1]
        if b.shape[0] != K or out.shape[0] != M or out.shape[1] != N:
            raise ValueError("matmul_into: shapes do not match (M, K) @ (K, N) -> (M, N)")
        if out.strides[1] != out.itemsize or out.strides[0] != N * out.itemsize:
            raise ValueError("matmul_into: out must be C-contiguous")
        if M == 0 or N == 0:
            return
        if K == 0:
            out[:] = 0
            return
        ta, lda = _operand(a)
        tb, ldb = _operand(b)
        _cblas_gemm(ta, tb, M, N, K, a, lda, b, ldb, out, N)

    return impl
