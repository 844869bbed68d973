"""Which implementation runs each recurrent layer: the reference or a fused kernel.

The recurrence has one driver (minis2s/ops/recurrent.py) and several implementations of its
pointwise steps (``ops.Steps``); RNNBase asks ``recurrent_steps(cell, x)`` for each layer's, and
the cache it gets back names them, so backward always runs the implementation forward ran:

    reference     ``cell.reference``, beside the cell's math in minis2s/ops/lstm.py, gru.py, rnn.py
    CPU kernels   kernels/lstm_cpu.py, gru_cpu.py (``VERSIONS[DEFAULT_VERSION]``): fused Numba steps,
                  for float32/float64 NumPy arrays (the tanh RNN has none: nothing to fuse)
    GPU kernels   kernels/lstm_cuda_c.py: the fused CUDA C steps for CuPy arrays (LSTM; untested on
                  a device so far: no GPU was lent)

The optimizer asks ``optimizer_kernels(*arrays)`` the same way: kernels/optim_cpu.py (Adam's
update and the gradient norm, one pass each) for C-contiguous float32/float64 NumPy arrays,
else None and minis2s/optim.py's NumPy code runs (bit for bit the same update); the embedding's
backward asks ``embedding_kernels(dout)`` for kernels/embedding_cpu.py's scatter-add (bit for bit
``np.add.at``'s sums).

One switch with one meaning: when it is off, every layer runs the reference, on the CPU and on
the GPU. It is on unless the environment variable ``MINIS2S_FASTPATH=0`` or
``minis2s.dispatch.set_enabled(False)`` turns it off (``set_enabled(None)`` hands the choice back
to the variable); ``with minis2s.dispatch.disabled():`` for a block. The CPU kernels need Numba
(without it, the reference runs). Every implementation gives the reference's numbers (float64
within 1e-12, float32 within 1e-5: tests/test_kernels_cpu.py, tests/test_kernels_cuda.py).
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from minis2s.backend import FLOAT_DTYPES, is_gpu_array

ENV_VAR = "MINIS2S_FASTPATH"
_switch: list = [None]  # set_enabled's choice; None: the environment variable decides
_kernels: dict = {}  # "cpu" -> {cell name: its kernel module}, or None if they cannot be imported


def _cpu_kernels():
    """{"lstm": minis2s.kernels.lstm_cpu, "gru": .gru_cpu, "optim": .optim_cpu, "embedding": .embedding_cpu},
    imported on first use (they import Numba), or None."""
    if "cpu" not in _kernels:
        try:
            from minis2s.kernels import embedding_cpu, gru_cpu, lstm_cpu, optim_cpu
        except ImportError as e:  # no Numba (or no kernels/ next to minis2s): the reference it is
            if (e.name or "").split(".")[0] not in ("numba", "llvmlite"):
                raise
            _kernels["cpu"] = None
        else:  # the tanh RNN has none: nothing to fuse
            _kernels["cpu"] = {"lstm": lstm_cpu, "gru": gru_cpu, "optim": optim_cpu, "embedding": embedding_cpu}
    return _kernels["cpu"]


def available() -> bool:
    """True when the fused CPU kernels can run here (Numba imports)."""
    return _cpu_kernels() is not None


def set_enabled(flag: bool | None) -> None:
    """Fast path on (True) or off (False) for this process; None: ``MINIS2S_FASTPATH`` decides."""
    if flag is not None and not isinstance(flag, bool):
        raise TypeError(f"flag must be True, False or None, got {flag!r}")
    _switch[0] = flag


def switched_on() -> bool:
    """The switch: set_enabled's choice, else ``MINIS2S_FASTPATH`` (on unless "0")."""
    return _switch[0] if _switch[0] is not None else os.environ.get(ENV_VAR, "1") != "0"


def enabled() -> bool:
    """Whether NumPy LSTM layers take the fast path now: the switch is on and Numba imports."""
    return switched_on() and available()


@contextlib.contextmanager
def disabled():
    """``with disabled():`` runs the block on the reference path, then restores the switch."""
    old = _switch[0]
    _switch[0] = False
    try:
        yield
    finally:
        _switch[0] = old


def _gpu_steps():
    from minis2s.kernels import lstm_cuda_c

    return lstm_cuda_c.default_steps()  # cuBLAS GEMMs + the fused CUDA C pointwise kernels


def recurrent_steps(cell, x):
    """The ``ops.Steps`` that runs one recurrent layer on ``x``: a fused kernel's or the
    reference (``cell.reference``)."""
    if type(x) is np.ndarray and x.dtype in FLOAT_DTYPES and enabled():
        kernels = _cpu_kernels().get(cell.name)
        if kernels is not None:
            return kernels.VERSIONS[kernels.DEFAULT_VERSION]
    if cell.name == "lstm" and is_gpu_array(x) and switched_on():
        return _gpu_steps()
    return cell.reference


def embedding_kernels(dout):
    """kernels/embedding_cpu.py when the fast path is on and ``dout`` is a C-contiguous float32
    or float64 NumPy array; else None (minis2s/ops/embedding.py's ``np.add.at`` runs)."""
    if type(dout) is np.ndarray and dout.dtype in FLOAT_DTYPES and dout.flags.c_contiguous and enabled():
        return _cpu_kernels()["embedding"]
    return None


def optimizer_kernels(*arrays):
    """kernels/optim_cpu.py when the fast path is on and every array is a C-contiguous float32
    or float64 NumPy array of the first one's dtype; else None (the caller runs its NumPy code)."""
    dt = arrays[0].dtype
    if all(type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous for a in arrays) \
            and dt in FLOAT_DTYPES and enabled():
        return _cpu_kernels()["optim"]
    return None
