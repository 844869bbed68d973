"""The fused LSTM pointwise kernels in Numba CUDA: the twin of kernels/lstm_pointwise.cu.

Same math (minis2s/ops/lstm.py), same kernel-set interface (kernels/kernel_set.py), so the
recurrence driver runs with either. One thread per hidden unit (b, j), as
version 1 of the CUDA C file.

Arrays:
* CuPy arrays go through ``__cuda_array_interface__``. Numba synchronises on the exporter's
  stream when it receives an array unless told not to; here every array is taken with
  ``cuda.as_cuda_array(a, sync=False)`` and the kernel is launched on CuPy's current stream
  (``cuda.external_stream``), so CuPy's GEMMs and these kernels stay ordered on one stream with
  no host synchronisation.
* NumPy arrays are passed as they are: under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
  set before numba is imported) the kernels run on the CPU, which is how
  tests/cudasim/test_numba_cuda_sim.py checks them without a GPU.

float32 stays float32: the kernels are built per dtype with their constants (0.5, 1) of that
dtype, since a Python float literal would promote float32 arithmetic to float64 in Numba.
"""
from __future__ import annotations

import math

import numpy as np

try:  # a module global, so that the CUDA simulator can swap in its fake ``cuda`` module
    from numba import cuda
except ImportError:  # pragma: no cover - depends on the machine
    cuda = None

BLOCK = 128  # threads per block


def _numba_cuda():
    if cuda is None:  # pragma: no cover - depends on the machine
        raise RuntimeError("minis2s.kernels.lstm_numba_cuda needs Numba: pip install 'minis2s[numba-cuda]'")
    return cuda


def make_kernels(dtype):
    """(forward_kernel, backward_kernel) for float32 or float64 arrays."""
    _numba_cuda()
    real = np.dtype(dtype).type
    half, one = real(0.5), real(1.0)

    @cuda.jit
    def forward_kernel(xg, hg, c_prev, h, c, gates, tanh_c):
        """xg, hg, gates: (B, 4H); c_prev, h, c, tanh_c: (B, H)."""
        def sigmoid(x):  # σ(x) = ½(1 + tanh(x/2)), as minis2s/ops/activations.py (inlined)
            return half * (math.tanh(half * x) + one)

        n = cuda.grid(1)
        B, H = c_prev.shape
        if n < B * H:
            b = n // H
            j = n - b * H
            i = sigmoid(xg[b, j] + hg[b, j])
            f = sigmoid(xg[b, H + j] + hg[b, H + j])
            g = math.tanh(xg[b, 2 * H + j] + hg[b, 2 * H + j])
            o = sigmoid(xg[b, 3 * H + j] + hg[b, 3 * H + j])
            c_new = f * c_prev[b, j] + i * g
            t = math.tanh(c_new)
            c[b, j] = c_new
            tanh_c[b, j] = t
            h[b, j] = o * t
            gates[b, j] = i
            gates[b, H + j] = f
            gates[b, 2 * H + j] = g
            gates[b, 3 * H + j] = o

    @cuda.jit
    def backward_kernel(dh, dc_next, gates, c_prev, tanh_c, da, dc_prev):
        """dh, dc_next, c_prev, tanh_c, dc_prev: (B, H); gates, da: (B, 4H)."""
        n = cuda.grid(1)
        B, H = dh.shape
        if n < B * H:
            b = n // H
            j = n - b * H
            i = gates[b, j]
            f = gates[b, H + j]
            g = gates[b, 2 * H + j]
            o = gates[b, 3 * H + j]
            t = tanh_c[b, j]
            dh_ = dh[b, j]
            dc = dc_next[b, j] + dh_ * o * (one - t * t)  # c reaches h through tanh
            da[b, j] = dc * g * i * (one - i)
            da[b, H + j] = dc * c_prev[b, j] * f * (one - f)
            da[b, 2 * H + j] = dc * i * (one - g * g)
            da[b, 3 * H + j] = dh_ * t * o * (one - o)
            dc_prev[b, j] = dc * f

    return forward_kernel, backward_kernel


class NumbaKernels:
    """The Numba CUDA kernel set (no persistent kernel: the sequence methods are None)."""

    sequence_forward = sequence_backward = None

    def __init__(self):
        _numba_cuda()
        self._kernels = {}

    def _get(self, dtype):
        d = np.dtype(dtype)
        if d not in (np.float32, np.float64):
            raise TypeError(f"the Numba CUDA kernels take float32 or float64, got {d}")
        if d not in self._kernels:
            self._kernels[d] = make_kernels(d)
        return self._kernels[d]

    def _launch(self, kernel, arrays, count):
        blocks = (count + BLOCK - 1) // BLOCK
        if type(arrays[0]).__module__.split(".")[0] == "cupy":
            import cupy

            stream = cuda.external_stream(cupy.cuda.get_current_stream().ptr)
            arrays = [cuda.as_cuda_array(a, sync=False) for a in arrays]
            kernel[blocks, BLOCK, stream](*arrays)
        else:  # NumPy arrays: the simulator (or a copy to and from the device on a real GPU)
            kernel[blocks, BLOCK](*arrays)

    def pointwise_forward(self, xg, hg, c_prev, h, c, gates, tanh_c):
        fwd, _ = self._get(xg.dtype)
        self._launch(fwd, (xg, hg, c_prev, h, c, gates, tanh_c), c_prev.size)

    def pointwise_backward(self, dh, dc_next, gates, c_prev, tanh_c, da, dc_prev):
        _, bwd = self._get(dh.dtype)
        self._launch(bwd, (dh, dc_next, gates, c_prev, tanh_c, da, dc_prev), dh.size)


_DEFAULT = []


def _default():
    if not _DEFAULT:
        _DEFAULT.append(NumbaKernels())
    return _DEFAULT[0]


def default_steps():
    """ops.Steps of the Numba CUDA kernel set (one per process): ``ops.lstm_forward(...,
    steps=default_steps())`` runs the driver with these kernels."""
    from minis2s.kernels.kernel_set import kernel_set_steps

    if len(_DEFAULT) < 2:
        _DEFAULT.append(kernel_set_steps(_default(), "numba_cuda"))
    return _DEFAULT[1]
