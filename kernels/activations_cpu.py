"""tanh and sigmoid that Numba can vectorise, for the fused CPU kernels (float32 and float64).

Why not ``math.tanh``: inside an ``@njit`` loop it is a scalar call into libm, which stops LLVM
from vectorising the loop: over a large array it ran about 35x slower in float32 than the tanh
below, which is within 3x of NumPy's SIMD tanh (one division per element is its bottleneck; the
figures: benchmarks/NOTES.md, "moved from kernels/activations_cpu.py").

The functions below are plain arithmetic (Cephes' algorithms), so the whole gate loop of an LSTM
step vectorises. Compiled with ``error_model="numpy"``: Numba's default Python error model puts a
ZeroDivisionError check in front of every division, which also stops vectorisation.

    tanh(x) = x + x³ P(x²)/Q(x²)                  |x| < 0.625  (no cancellation near 0)
            = sign(x) (1 - 2 / (e^{2|x|} + 1))    otherwise
    e^y     = 2^n e^r,  n = round(y / ln 2),  |r| <= ln2 / 2,  e^r from a Padé (float64) or
              polynomial (float32) approximation, 2^n exact as float(1 << n)
    sigmoid(x) = ½ (1 + tanh(x/2))                (as minis2s/ops/activations.py: never overflows)

Accuracy against ``np.tanh`` (tests/test_kernels_cpu.py checks it): ≤ 2 ulp in float64, ≤ 2 ulp in
float32 over the whole real line; NaN in, NaN out.

Called from Python (not from Numba), ``tanh`` and ``sigmoid`` are NumPy's, so they work on arrays.

``tanh_rational`` and ``sigmoid_rational`` (kernels/lstm_cpu.py's version 4) trade accuracy for
speed in float32 only: Eigen's rational approximation (``generic_fast_tanh_float``, a degree
13/6 odd/even pair in x, clamped at |x| = 7.905, x itself below 4e-4): no exp, one division,
about half the time of the float32 tanh above inside a kernel (benchmarks/NOTES.md). Its error
is at most 7 ulp (measured 6.6, near |x| = 5.8 where tanh is 1 - 2e-5; at most 4.4 ulp for
|x| ≤ 3; mean 0.9): below 5e-7 absolute everywhere, under the float32 kernels' 1e-5 tolerance
by a factor of 20. In float64 they are ``tanh`` and ``sigmoid`` above (no cheap float64 twin).
"""
from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

F32 = np.float32


def tanh(x):
    """tanh; inside ``@njit`` code, the vectorisable version for float32/float64 scalars."""
    return np.tanh(x)


def sigmoid(x):
    """σ(x) = ½(1 + tanh(x/2)); inside ``@njit`` code, built on the vectorisable tanh."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _tanh_float64(x):
    z = abs(x)
    # |x| < 0.625: Cephes' rational approximation (tanh.c)
    s = z * z
    p = (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s - 1.61468768441708447952e3
    q = ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s + 4.84406305325125486048e3
    small = z + z * s * (p / q)
    # |x| >= 0.625: 1 - 2 / (e^y + 1), y = 2|x| (clamped at 40: tanh is 1.0 in float64 from |x| = 19.1)
    y = min(2.0 * z, 40.0)
    n = np.floor(y * 1.4426950408889634 + 0.5)  # round(y / ln 2)
    r = (y - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6  # ln 2 split in two: exact n·ln2_hi
    rr = r * r
    px = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 9.99999999999999999910e-1)
    qx = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr + 2.27265548208155028766e-1) * rr
    qx = qx + 2.00000000000000000009e0
    e = (1.0 + 2.0 * (px / (qx - px))) * float(np.int64(1) << np.int64(n))  # e^r · 2^n (Cephes exp.c)
    large = 1.0 - 2.0 / (e + 1.0)
    t = small if z < 0.625 else large
    t = t if x >= 0.0 else -t
    return x if math.isnan(x) else t  # NaN stays NaN


def _tanh_float32(x):
    z = abs(x)
    # |x| < 0.625: Cephes' polynomial (tanhf.c)
    s = z * z
    p = (((F32(-5.70498872745e-3) * s + F32(2.06390887954e-2)) * s - F32(5.37397155531e-2)) * s
         + F32(1.33314422036e-1)) * s - F32(3.33332819422e-1)
    small = z + z * s * p
    # |x| >= 0.625: 1 - 2 / (e^y + 1), y = 2|x| (clamped at 20: tanh is 1.0f from |x| = 9.1)
    y = min(F32(2.0) * z, F32(20.0))
    n = np.floor(y * F32(1.44269504088896341) + F32(0.5))
    r = (y - n * F32(0.693359375)) - n * F32(-2.12194440e-4)  # Cephes expf.c
    rr = r * r
    er = (((((F32(1.9875691500e-4) * r + F32(1.3981999507e-3)) * r + F32(8.3334519073e-3)) * r
            + F32(4.1665795894e-2)) * r + F32(1.6666665459e-1)) * r + F32(5.0000001201e-1)) * rr + r + F32(1.0)
    e = er * F32(np.int32(1) << np.int32(n))
    large = F32(1.0) - F32(2.0) / (e + F32(1.0))
    t = small if z < F32(0.625) else large
    t = t if x >= F32(0.0) else -t
    return x if math.isnan(x) else t


def tanh_rational(x):
    """tanh; inside ``@njit`` code, Eigen's rational approximation for float32 (≤ 7 ulp), the
    accurate ``tanh`` for float64."""
    return np.tanh(x)


def sigmoid_rational(x):
    """σ(x) = ½(1 + tanh(x/2)); inside ``@njit`` code, built on ``tanh_rational``."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


# Eigen's generic_fast_tanh_float (Eigen/src/Core/MathFunctionsImpl.h): odd numerator, even denominator
_A = tuple(F32(a) for a in (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
                            -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))  # α1, α3, ..., α13
_B = tuple(F32(b) for b in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04,
                            1.19825839466702e-06))  # β0, β2, β4, β6
_CLAMP = F32(7.90531110763549805)  # where the rational reaches 1.0f
_LINEAR = F32(4e-4)  # below: tanh(x) = x in float32


def _tanh_rational_float32(x):
    z = min(max(x, -_CLAMP), _CLAMP)
    s = z * z
    p = ((((((_A[6] * s + _A[5]) * s + _A[4]) * s + _A[3]) * s + _A[2]) * s + _A[1]) * s + _A[0]) * z
    q = ((_B[3] * s + _B[2]) * s + _B[1]) * s + _B[0]
    t = x if abs(x) < _LINEAR else p / q
    return x if math.isnan(x) else t


def _sigmoid_rational_float32(x):
    return F32(0.5) * (tanh_rational(F32(0.5) * x) + F32(1.0))


def _sigmoid_float64(x):
    return 0.5 * (tanh(0.5 * x) + 1.0)


def _sigmoid_float32(x):
    return F32(0.5) * (tanh(F32(0.5) * x) + F32(1.0))


_JIT = {"error_model": "numpy", "fastmath": False}


def _by_dtype(fn, float64_impl, float32_impl):
    """Inside ``@njit`` code, ``fn(x)`` of a float64 / float32 scalar compiles to the given
    implementation (other types: no overload, so Numba reports the call as unsupported)."""
    @overload(fn, jit_options=_JIT)
    def _choose(x):
        if x == types.float64:
            return float64_impl
        if x == types.float32:
            return float32_impl
        return None


_by_dtype(tanh, _tanh_float64, _tanh_float32)
_by_dtype(sigmoid, _sigmoid_float64, _sigmoid_float32)
_by_dtype(tanh_rational, _tanh_float64, _tanh_rational_float32)
_by_dtype(sigmoid_rational, _sigmoid_float64, _sigmoid_rational_float32)
