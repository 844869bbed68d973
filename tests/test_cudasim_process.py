"""Runs tests/cudasim (the Numba CUDA kernels under Numba's CUDA simulator) in its own pytest
process, so that a plain ``python -m pytest tests`` (what CI runs) covers them too.

The simulator has to be switched on before numba is first imported, which this process may
already have done; the child starts clean with ``NUMBA_ENABLE_CUDASIM=1``. By hand:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cudasim
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
                    reason="the simulator is on in this process: tests/cudasim runs here directly")
def test_numba_cuda_kernels_pass_under_the_simulator_in_their_own_process():
    pytest.importorskip("numba", reason="Numba is not installed")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, "-m", "pytest", "tests/cudasim", "-q", "-p", "no:cacheprovider", "-rs"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"NUMBA_ENABLE_CUDASIM=1 pytest tests/cudasim failed:\n{out[-6000:]}"
    assert "skipped" not in out.lower(), f"simulator tests were skipped:\n{out[-3000:]}"
