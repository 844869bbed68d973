"""Fused kernels, each a second implementation of an op in minis2s/ops, checked against it.

Installed as ``minis2s.kernels`` (the folder stays at the top of the repository). Imports run
one way: kernels import minis2s.ops and minis2s.backend (the reference and the array module),
nothing in minis2s.ops imports kernels; minis2s/dispatch.py picks an implementation per layer.

    lstm_cpu.py            the LSTM's fused Numba steps for the CPU (versions 1-4)
    gru_cpu.py             the GRU's, the same recipe
    activations_cpu.py     tanh and sigmoid that Numba vectorises (no libm calls)
    blas_cpu.py            a direct cblas GEMM callable from Numba (version 3's time loops)
    optim_cpu.py           Adam's update and the gradient norm, one pass each (optim.py's NumPy code)
    embedding_cpu.py       the embedding backward's scatter-add (np.add.at compiled, the same sums)
    kernel_set.py          the CUDA kernel-set interface, and the driver's steps for any kernel set
    lstm_cell.cuh          the LSTM cell's per-element math (CUDA C, __host__ __device__)
    lstm_pointwise.cu      fused pointwise forward/backward kernels, versions 1 and 2
    lstm_persistent.cu     persistent whole-sequence LSTM forward and backward (W_hh in shared memory)
    lstm_cuda_c.py         the CUDA C kernel set through CuPy: the GPU path
    lstm_numba_cuda.py     the same pointwise kernels in Numba CUDA (CuPy arrays, or the simulator)
    cuda_host.py           test tooling: nvcc builds, the CUDA C host twins, resource usage
    harness.py             checks any implementation against the float64 reference
    numba_cache.py         Numba's on-disk cache stamped by this folder and minis2s/ops (an edit there recompiles)
"""
from minis2s.kernels import numba_cache as _numba_cache

try:  # before any kernel module compiles: their cache must see edits to the files they inline
    _numba_cache.install()
except ImportError:  # pragma: no cover - no numba: minis2s runs on the NumPy reference
    pass
