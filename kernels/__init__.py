"""Fused kernels, each a second implementation of an op in minis2s/ops, validated against it.

    lstm_cell.cuh          the LSTM cell's per-element math (CUDA C, __host__ __device__)
    lstm_pointwise.cu      fused pointwise forward/backward kernels, versions 1 and 2
    lstm_persistent.cu     persistent whole-sequence LSTM forward and backward (W_hh in shared memory)
    lstm_cupy.py           the GPU LSTM: cuBLAS GEMMs + the CUDA C kernels through CuPy
    lstm_numba_cuda.py     the same pointwise kernels in Numba CUDA (CuPy arrays, or the simulator)
    cuda_host.py           nvcc builds, the CUDA C host twins through ctypes, resource usage
    lstm_cpu.py            the CPU LSTM: BLAS GEMMs + fused Numba pointwise kernels (versions 1, 2)
    gru_cpu.py             the CPU GRU, the same recipe
    activations_cpu.py     tanh and sigmoid that Numba vectorises (no libm calls), for lstm_cpu.py
"""
