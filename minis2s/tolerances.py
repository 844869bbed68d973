"""The tolerances every correctness claim is tested at, each with its reason: one source of truth
(kernels/harness.py and tests/ import them; tests/README.md lists the claims).

All are bounds on ``minis2s.gradcheck.rel_error`` (max |a - b| over a tensor / the larger of
the two tensors' max |a|, |b|).
"""
import numpy as np

# float64 central differences, eps 1e-5: truncation ~eps² = 1e-10, round-off ~1e-16·|L|/eps ~ 1e-10
GRADCHECK = 1e-7

# float64 against PyTorch: the same math summed in another order (~1e-15 seen)
TORCH_F64 = 1e-9

# ... where one parameter's gradient is a sum whose terms cancel almost exactly (a Bahdanau
# query weight with one 2-letter source: every entry ~4e-11 while other gradients are ~0.8),
# the sum's round-off is ~1e-16 of its terms, not of itself: 2.6e-9 of that tensor was seen
# (an absolute 1.1e-19) against torch's same sum. So each gradient tensor is
# measured against at least this fraction of the model's largest gradient entry: a difference
# must stay under TORCH_F64 * 1e-6 = 1e-15 of that entry, still ~10 ulp of it.
TORCH_F64_GRADIENT_FLOOR = 1e-6

# float32 against PyTorch: float32's epsilon (1.2e-7) amplified through T steps
TORCH_F32 = 1e-4

# a fused kernel against the float64 reference, on inputs exactly representable in the kernel's
# dtype: float64 round-off only; float32 a few ulp (1.2e-7) of the largest value
KERNEL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}

# float64, the same sums in another order: BLAS threads, MPI ranks, beam rows decoded together
SAME_SUMS_F64 = 1e-12
