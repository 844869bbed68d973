"""Shared test helpers: one way to compare (``check_close``, minis2s/gradcheck.py), the
tolerances (minis2s/tolerances.py), a seeded generator."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minis2s.gradcheck import check_close, rel_error  # noqa: F401
from minis2s.tolerances import GRADCHECK as GRADCHECK_TOL  # noqa: F401  (the reasons: that module)
from minis2s.tolerances import TORCH_F32 as F32_TOL  # noqa: F401
from minis2s.tolerances import TORCH_F64 as F64_TOL  # noqa: F401


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
