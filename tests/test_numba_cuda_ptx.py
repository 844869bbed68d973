"""The Numba CUDA kernels compiled for the H100 without a GPU: ``cuda.compile_ptx`` (NVVM) for
sm_90, then ptxas for registers and spills.

This is the real compiler, not the simulator (tests/cudasim runs the same kernels' Python on
the CPU): it proves the kernels type-check and compile for the device with C-contiguous 2-D
arrays (what CuPy arrays arrive as), that the float32 kernels hold no float64 instruction (a
Python float literal would have promoted them), and that nothing spills.
"""
import os

import numpy as np
import pytest
from minis2s.kernels import cuda_host

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA simulator is on: compile_ptx needs the real Numba CUDA target", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda", reason="Numba is not installed")
from minis2s.kernels import lstm_numba_cuda
from numba import float32, float64

TYPES = {"float32": (np.float32, float32), "float64": (np.float64, float64)}


def compile_ptx(dtype_name, which):
    np_dtype, nb_type = TYPES[dtype_name]
    forward, backward = lstm_numba_cuda.make_kernels(np_dtype)
    kernel = forward if which == "forward" else backward
    try:
        ptx, _ = cuda.compile_ptx(kernel.py_func, (nb_type[:, ::1],) * 7, cc=(9, 0))
    except Exception as e:  # NVVM missing: nothing to compile with on this machine
        if "NVVM" in str(e) or "libnvvm" in str(e).lower():
            pytest.skip(f"Numba finds no NVVM (CUDA toolkit): {e}")
        raise
    return ptx


@pytest.mark.parametrize("which", ["forward", "backward"])
@pytest.mark.parametrize("dtype_name", list(TYPES))
def test_numba_kernel_compiles_for_sm90_in_its_own_precision(dtype_name, which, tmp_path):
    ptx = compile_ptx(dtype_name, which)
    f64_lines = [line.strip() for line in ptx.splitlines() if ".f64" in line]
    if dtype_name == "float32":
        assert not f64_lines, f"float32 {which} kernel computes in float64: {f64_lines[:5]}"
    else:
        assert f64_lines
    if cuda_host.nvcc_path() is None:
        pytest.skip("ptxas not found: PTX compiled, resource usage not checked")
    usage = cuda_host.ptx_resource_usage(ptx, tmp_path)
    assert len(usage) == 1, usage
    (u,) = usage.values()
    assert u["spill_store_bytes"] == 0 and u["spill_load_bytes"] == 0, u
