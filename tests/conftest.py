"""Shared test helpers: one way to compare (``check_close``), random float64 data."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minis2s.gradcheck import rel_error  # noqa: E402

# Tolerances (see README "How correctness is proven"):
#   float64 gradient checks:   max relative error <= 1e-7 (central differences, eps 1e-5:
#                              truncation ~eps^2 = 1e-10, round-off ~1e-16*|L|/eps ~ 1e-10)
#   float64 vs PyTorch:        <= 1e-9 (same math, different summation order: ~1e-15 expected)
#   float32 vs PyTorch:        <= 1e-4 (float32 epsilon 1.2e-7 amplified through T steps)
GRADCHECK_TOL = 1e-7
F64_TOL = 1e-9
F32_TOL = 1e-4


def check_close(name, ours, ref, tol):
    """Fail with what differs, where and by how much."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != reference {ref.shape}"
    err = rel_error(ours, ref)
    if err > tol:
        k = np.unravel_index(np.argmax(np.abs(ours - ref)), ours.shape)
        pytest.fail(f"{name}: relative error {err:.3e} > {tol:.0e}; worst at {k}: ours {ours[k]!r}, ref {ref[k]!r}")
    return err


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
