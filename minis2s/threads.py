"""BLAS threads per operation, inside minis2s's own calls only: small GEMMs on one thread.

Why: OpenBLAS splits even a small GEMM — one step of a recurrence, (B, H) · (H, 4H) — over every
core, and its threads spin between the many small GEMMs of a sequence. On 2 cores that made the
reverse demo slower than one thread, and far slower beside another busy process (the README's
BLAS threads note has the figures and how they were measured). Large GEMMs (a long sequence's
input projection, a big batch) do gain from all cores.

How: each minis2s call that runs GEMMs opens ``blas_threads(macs)`` with the size of its typical
GEMM in multiply-adds: a model's forward, backward and decoding calls with that of one step of
its decoder's recurrence (B × H × G), and a layer used on its own (LSTM, GRU, RNN, Linear,
Attention) with its own. Below ``SMALL_GEMM_MACS`` the call runs on one BLAS thread; above it,
on what the caller allows. Only the outermost scope acts — inside a model call the layers keep
the model's choice — because switching the count between consecutive GEMMs costs more than it
saves (the pool's threads go to sleep and must be woken; the measurement: benchmarks/NOTES.md).
The count is set through ``threadpoolctl`` (the well-kept library for exactly this) on the BLAS
libraries NumPy loaded, and restored when the call returns: nothing changes for the rest of the
caller's process.

The caller's choice wins:
* ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` or ``BLIS_NUM_THREADS`` set
  in the environment: minis2s leaves the thread count alone;
* a ``threadpoolctl.threadpool_limits(...)`` around the call: minis2s never goes above the count
  it finds, it only lowers it for small GEMMs;
* ``set_blas_threads(n)``: minis2s's ops use at most n threads (always n when allowed, whatever
  their size); ``set_blas_threads(None)`` leaves BLAS alone; ``"auto"`` (the default) is the
  rule above. The environment variable ``MINIS2S_BLAS_THREADS`` (``auto``, ``none`` or n) sets
  the starting mode of a process.
"""
from __future__ import annotations

import contextlib
import functools
import os

ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
# One thread below this many multiply-adds per step GEMM: between the reverse demo's step GEMM
# (B·H·G = 4.2 M), where 2 threads barely helped on the quiet 2-core machine and cost several
# times its time beside a busy core, and G2P's (75.5 M), where they helped when quiet (figures:
# the README's BLAS threads note, benchmarks/NOTES.md). Alone, back to back, 2 threads win from
# much smaller GEMMs (benchmarks/blas_threads.py); amid the rest of a training step they help less
# and, when another process holds a core, cost far more. The rule depends on the size alone, never
# on the load, so that a run is reproducible: the thread count can change a float32 GEMM's last bits.
SMALL_GEMM_MACS = 16_000_000

MODE_VAR = "MINIS2S_BLAS_THREADS"


def _mode_from_env():
    text = os.environ.get(MODE_VAR, "auto").strip().lower()
    if text == "auto":
        return "auto"
    if text in ("none", ""):
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"{MODE_VAR} must be 'auto', 'none' or an int >= 1, got {os.environ[MODE_VAR]!r}")


_mode: list = [_mode_from_env()]  # "auto", an int >= 1, or None
_libs: list = []  # [threadpoolctl LibController of each BLAS NumPy loaded], filled on first use
_found: list = [False]
_depth: list = [0]  # how many blas_threads scopes are open: only the outermost one acts


def set_blas_threads(mode) -> None:
    """"auto" (the default: one thread for small GEMMs), an int n >= 1 (at most n threads in
    minis2s's ops), or None (minis2s never touches the BLAS thread count)."""
    if mode not in ("auto", None) and (isinstance(mode, bool) or not isinstance(mode, int) or mode < 1):
        raise ValueError(f"set_blas_threads takes 'auto', None or an int >= 1, got {mode!r}")
    _mode[0] = mode


def get_blas_threads():
    return _mode[0]


def _blas_libs() -> list:
    if not _found[0]:
        _found[0] = True
        try:
            import numpy  # noqa: F401  (its BLAS must be loaded to be found)
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            return _libs
        _libs.extend(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _libs


def chosen_threads(macs: int, allowed: int):
    """The thread count for a GEMM of ``macs`` multiply-adds when the caller allows
    ``allowed`` (None: leave it as it is)."""
    mode = _mode[0]
    if mode is None or any(os.environ.get(v) for v in ENV_VARS):
        return None
    if mode == "auto":
        return 1 if macs < SMALL_GEMM_MACS else allowed
    return min(mode, allowed)


@contextlib.contextmanager
def blas_threads(macs: int):
    """Within this block NumPy's BLAS runs on the threads ``chosen_threads`` gives (unless an
    enclosing scope has chosen already)."""
    changed = []
    if _depth[0] == 0:
        for lib in _blas_libs():
            current = lib.num_threads
            want = chosen_threads(int(macs), current)
            if want is not None and want != current:
                lib.set_num_threads(want)
                changed.append((lib, current))
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        for lib, current in changed:
            lib.set_num_threads(current)


def recurrent_step_macs(rnn, batch: int) -> int:
    """Multiply-adds of one step's recurrent GEMM of ``rnn`` (an nn.LSTM, GRU or RNN): B × H × G."""
    H = rnn.hidden_size
    return batch * H * rnn.cell.gates * H


def model_call(batch_axis: int):
    """Decorator for a model's method whose first argument holds the batch on ``batch_axis``:
    the call runs in ``blas_threads(self.step_macs(B))``."""
    def decorate(method):
        @functools.wraps(method)
        def scoped(self, first, *args, **kwargs):
            batch = first.shape[batch_axis] if getattr(first, "ndim", 0) > batch_axis else 1
            with blas_threads(self.step_macs(batch)):
                return method(self, first, *args, **kwargs)
        return scoped
    return decorate
