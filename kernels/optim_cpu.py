"""The optimizer's update and the gradient norm in one pass each (Numba): minis2s/optim.py's
NumPy code, compiled.

Why: after the backward pass a training step spends its time in memory, not in arithmetic.
``Adam.step`` on NumPy runs a dozen array expressions per parameter (m *= β1, (1-β1)·g, g², √v,
…), each one a full pass over the parameter and most of them a fresh temporary the allocator
must fault in; for the G2P model (4 M parameters) that was ~18 ms of a ~280 ms one-thread step
(cProfile, benchmarks/NOTES.md). Fused, every element is read once (θ, g, m, v) and written once
(θ, m, v). ``clip_grad_norm_`` likewise: ``(|g|**2).sum()`` builds two temporaries per gradient;
here it is one read.

    adam_update(p, g, m, v, ...)    per element, in the reference's order and precision:
        g' = g + λθ                  (only when weight_decay: the reference's branch)
        m  = β1·m + (1-β1)·g';   v = β2·v + (1-β2)·g'²
        θ -= (lr/(1-β1^t)) · m / (√v / √(1-β2^t) + eps)
    sum_of_squares(g) -> Σ g²       accumulated in float64 whatever g's dtype

Every scalar arrives in the arrays' dtype, as NumPy's weak scalars give the reference (a Python
float times a float32 array is float32 arithmetic), and ``fastmath`` is off (no contraction
into FMAs), so the update is the reference's bit for bit: tests/test_optim.py checks equality
in float32 and float64. The sum of squares differs from NumPy's float32 pairwise sum by its
rounding only (float64 accumulation is the more exact of the two); its test bounds the difference.

Arrays: C-contiguous NumPy float32/float64 arrays of one shape and dtype (``minis2s.dispatch``
sends only those here); ``ravel()`` is then a view and the update is in place.
"""
from __future__ import annotations

import math

import numpy as np
from minis2s.kernels.lstm_cpu import JIT  # the CPU kernels' one set of Numba options (cached, no fastmath)
from numba import njit


@njit(**JIT)
def _adam(p, g, m, v, one_minus_b1, b1, one_minus_b2, b2, bias2_sqrt, eps, step_size, weight_decay,
          decay):
    # p, g, m, v: (n,) views of one parameter; every scalar already in their dtype
    for k in range(p.shape[0]):
        gk = g[k] + weight_decay * p[k] if decay else g[k]
        mk = m[k] * b1 + one_minus_b1 * gk  # m *= β1; m += (1-β1)·g
        vk = v[k] * b2 + one_minus_b2 * (gk * gk)  # v *= β2; v += (1-β2)·(g·g)
        m[k] = mk
        v[k] = vk
        p[k] -= step_size * (mk / (np.sqrt(vk) / bias2_sqrt + eps))


def adam_update(p, g, m, v, *, lr: float, betas, eps: float, weight_decay: float, step: int) -> None:
    """One Adam step for one parameter, in place: ``p``, ``m``, ``v`` updated from ``g`` (all
    C-contiguous, one shape, one float dtype); ``step`` is t, already counted (1 on the first)."""
    b1, b2 = betas
    dt = p.dtype.type
    bias1 = 1 - b1**step
    bias2_sqrt = math.sqrt(1 - b2**step)
    _adam(p.ravel(), g.ravel(), m.ravel(), v.ravel(), dt(1 - b1), dt(b1), dt(1 - b2), dt(b2),
          dt(bias2_sqrt), dt(eps), dt(lr / bias1), dt(weight_decay), bool(weight_decay))


# reassoc: LLVM may split the sum into vector lanes (without it the one accumulator's order is
# kept and the loop runs scalar: 7 ms a G2P step against ~1 ms); the order of a float64 sum of
# float32 squares moves its result by ~1e-16 relative, nothing next to NumPy's float32 sum
@njit(**{**JIT, "fastmath": {"reassoc"}})
def _sum_of_squares(g):
    total = 0.0  # float64 accumulator, whatever g's dtype
    for k in range(g.shape[0]):
        x = np.float64(g[k])
        total += x * x
    return total


def sum_of_squares(g) -> float:
    """Σ g² over a C-contiguous float array, accumulated in float64."""
    return float(_sum_of_squares(g.ravel()))

