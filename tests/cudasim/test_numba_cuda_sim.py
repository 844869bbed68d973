"""The Numba CUDA kernels (kernels/lstm_numba_cuda.py) run under Numba's CUDA simulator, against
the float64 reference, through the same harness as the CUDA C and CuPy kernels.

The simulator must be switched on before numba is imported, so this directory runs in its own
pytest process:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cudasim

A plain ``pytest tests`` run does not collect this directory (tests/conftest.py's
``collect_ignore``); tests/test_cudasim_process.py runs it in a child process instead. Collected
without the variable set (``pytest tests/cudasim``), it skips with that command as the reason.
The simulator runs each thread of a block as a Python thread, one block at a time, so shapes
are tiny; one case has B·H > the block size, so the multi-block index arithmetic and the
``n < B·H`` guard run too.
"""
import os

import numpy as np
import pytest

COMMAND = "NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cudasim"
if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip(f"needs Numba's CUDA simulator in its own process: run `{COMMAND}`", allow_module_level=True)

from numba import config

if not config.ENABLE_CUDASIM:  # numba was imported before the variable was set
    pytest.skip(f"numba was imported before NUMBA_ENABLE_CUDASIM=1: run `{COMMAND}`", allow_module_level=True)

from conftest import check_close
from minis2s.kernels import lstm_numba_cuda
from minis2s.kernels.harness import (
    check_kernel_set,
    check_pointwise_backward,
    check_pointwise_forward,
)

from minis2s.tolerances import KERNEL

dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


@pytest.fixture(scope="module")
def kernels():
    return lstm_numba_cuda.NumbaKernels()


@dtypes
@pytest.mark.parametrize("B,H", [(1, 1), (2, 3), (3, 50)])  # 150 threads: two blocks of 128
def test_numba_pointwise_forward_matches_reference(kernels, dtype, B, H, rng):
    check_pointwise_forward(kernels, dtype, B, H, rng)


@dtypes
@pytest.mark.parametrize("B,H", [(1, 1), (2, 3), (3, 50)])
def test_numba_pointwise_backward_matches_reference(kernels, dtype, B, H, rng):
    check_pointwise_backward(kernels, dtype, B, H, rng)


@dtypes
@pytest.mark.parametrize("case", ["all_grads", "lengths"])
def test_numba_sequence_forward_backward_matches_reference(kernels, dtype, case, rng):
    lengths = np.array([3, 1]) if case == "lengths" else None
    check_kernel_set(kernels, dtype, 3, 2, 3, 4, rng, lengths=lengths)


def test_numba_default_steps_run_through_ops_lstm_forward(rng):
    """lstm_numba_cuda.default_steps(): ops.lstm_forward(..., steps=) with these kernels gives the
    reference's results, and its cache names them."""
    from minis2s import ops

    T, B, I, H = 2, 2, 3, 2
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = [rng.standard_normal(s) for s in [(4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]]
    dout = rng.standard_normal((T, B, H))
    steps = lstm_numba_cuda.default_steps()
    out, (h, c), cache = ops.lstm_forward(x, h0, c0, *w, steps=steps)
    assert cache.steps is steps and steps.name == "numba_cuda"
    ref_out, (ref_h, ref_c), ref_cache = ops.lstm_forward(x, h0, c0, *w)
    grads = ops.lstm_backward(dout, None, None, cache)
    ref_grads = ops.lstm_backward(dout, None, None, ref_cache)
    names = ("out", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")
    for name, a, b in zip(names, (out, h, c) + grads, (ref_out, ref_h, ref_c) + ref_grads):
        check_close(name, a, b, KERNEL[np.dtype(np.float64)])
