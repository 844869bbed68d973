"""The one switch between the NumPy reference recurrence and the fused CPU kernels.

RNNBase asks ``recurrent_functions(cell, x)`` for each layer's ``(forward, backward)`` pair, both
with the signatures of ``ops.recurrent_forward`` / ``ops.recurrent_backward``, and keeps the
backward beside the cache it pushes, so a cache is always consumed by the path that made it:

    reference   minis2s/ops/recurrent.py     plain NumPy, always there, the specification
    fast path   kernels/lstm_cpu.py          GEMMs + fused Numba pointwise kernels
                kernels/gru_cpu.py           (the tanh RNN has no fast path: nothing to fuse)
    GPU path    kernels/lstm_cupy.py         cuBLAS GEMMs + fused CUDA C kernels, for CuPy arrays
                                             (LSTM; untested on a device so far: no GPU was lent)

One switch with one meaning: when it is off, every layer runs the reference, on the CPU and on
the GPU. It is on unless the environment variable ``MINIS2S_FASTPATH=0`` or
``minis2s.fastpath.set_enabled(False)`` turns it off (``set_enabled(None)`` hands the choice back
to the variable); ``with minis2s.fastpath.disabled():`` for a block. The CPU fast path is taken
when the switch is on, Numba imports, the cell is an LSTM or a GRU, and ``x`` is a
float32/float64 NumPy array; the GPU path when the switch is on, the cell an LSTM, ``x`` CuPy.
Both paths give the same numbers (tests/test_fastpath.py: float64 within 1e-12, float32 1e-5).
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from minis2s import ops
from minis2s.backend import FLOAT_DTYPES, is_gpu_array

ENV_VAR = "MINIS2S_FASTPATH"
_switch: list = [None]  # set_enabled's choice; None: the environment variable decides
_kernels: dict = {}  # "cpu" -> (kernels.lstm_cpu, kernels.gru_cpu), or None if they cannot be imported


def _cpu_kernels():
    """(minis2s.kernels.lstm_cpu, .gru_cpu), imported on first use (they import Numba), or None."""
    if "cpu" not in _kernels:
        try:
            from minis2s.kernels import gru_cpu, lstm_cpu
        except ImportError as e:  # no Numba (or no kernels/ next to minis2s): the reference it is
            if (e.name or "").split(".")[0] not in ("numba", "llvmlite"):
                raise
            _kernels["cpu"] = None
        else:
            _kernels["cpu"] = (lstm_cpu, gru_cpu)
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


def _lstm_forward(cell, x, state0, w_ih, w_hh, b_ih, b_hh, lengths=None):
    """ops.recurrent_forward's signature over kernels/lstm_cpu.lstm_forward."""
    out, (h_n, c_n), cache = _cpu_kernels()[0].lstm_forward(x, *state0, w_ih, w_hh, b_ih, b_hh, lengths)
    return out, (h_n, c_n), cache


def _lstm_backward(dout, dstate_n, cache):
    """ops.recurrent_backward's signature over kernels/lstm_cpu.lstm_backward."""
    dx, dh0, dc0, *dparams = _cpu_kernels()[0].lstm_backward(dout, *dstate_n, cache)
    return dx, (dh0, dc0), tuple(dparams)


def _gru_forward(cell, x, state0, w_ih, w_hh, b_ih, b_hh, lengths=None):
    """ops.recurrent_forward's signature over kernels/gru_cpu.gru_forward."""
    out, h_n, cache = _cpu_kernels()[1].gru_forward(x, *state0, w_ih, w_hh, b_ih, b_hh, lengths)
    return out, (h_n,), cache


def _gru_backward(dout, dstate_n, cache):
    """ops.recurrent_backward's signature over kernels/gru_cpu.gru_backward."""
    dx, dh0, *dparams = _cpu_kernels()[1].gru_backward(dout, *dstate_n, cache)
    return dx, (dh0,), tuple(dparams)


FAST = {"lstm": (_lstm_forward, _lstm_backward), "gru": (_gru_forward, _gru_backward)}


def _cuda_lstm_forward(cell, x, state0, w_ih, w_hh, b_ih, b_hh, lengths=None):
    """ops.recurrent_forward's signature over kernels/lstm_cupy.lstm_forward (CuPy arrays)."""
    from minis2s.kernels import lstm_cupy

    out, (h_n, c_n), cache = lstm_cupy.lstm_forward(x, *state0, w_ih, w_hh, b_ih, b_hh, lengths)
    return out, (h_n, c_n), cache


def _cuda_lstm_backward(dout, dstate_n, cache):
    from minis2s.kernels import lstm_cupy

    dx, dh0, dc0, *dparams = lstm_cupy.lstm_backward(dout, *dstate_n, cache)
    return dx, (dh0, dc0), tuple(dparams)


GPU = {"lstm": (_cuda_lstm_forward, _cuda_lstm_backward)}


def recurrent_functions(cell, x):
    """(forward, backward) for one recurrent layer on ``x``: the fast path or the reference."""
    if cell.name in FAST and type(x) is np.ndarray and x.dtype in FLOAT_DTYPES and enabled():
        return FAST[cell.name]
    if cell.name in GPU and is_gpu_array(x) and switched_on():
        return GPU[cell.name]  # cuBLAS GEMMs + the fused CUDA C pointwise kernels
    return ops.recurrent_forward, ops.recurrent_backward
