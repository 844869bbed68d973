"""What the benchmarks record about the machine beside their figures, and the load they can add."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time


def blas_kernel():
    """The kernel family NumPy's OpenBLAS runs (e.g. "SkylakeX", "Haswell"), or None if unknown.

    Some machine images set OPENBLAS_CORETYPE=Haswell (and OPENBLAS_L2_SIZE) because older
    OpenBLAS builds misbehaved on their CPUs; a current NumPy then runs AVX2 kernels on an AVX-512
    CPU, at about half the sgemm rate (measured here: 1 thread, n=2048, 129 against 253 GFLOP/s).
    Every result records the kernel, so figures are only compared kernel for kernel."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                       "openblas_get_corename64_", "openblas_get_corename"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None


@contextlib.contextmanager
def busy_core(enabled: bool = True):
    """``with busy_core():`` keeps one core busy with another process (a pure-Python spin loop)
    for the block: the benchmarks' ``--busy``. On a 2-core machine that is what a user's other
    work does to a training run, and what OpenBLAS's spinning threads handle worst. Yields the
    process (None when not enabled); it is killed when the block ends."""
    if not enabled:
        yield None
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it start and take its core before anything is timed
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


# minis2s's BLAS thread choice (minis2s/threads.py) times its first calls on 1 thread and on all
# before it settles: a training loop runs thousands of calls, so the benchmarks time the settled
# choice (measured: 4 to 7 calls at lstm_cpu.py's B = 64 shapes). Then it runs the calls up to the
# first re-trial of the slower count (ThreadChoice.EXPLORE_EVERY after settling, + 4 for the
# trial itself): one first trial that met a pool's wake-up or fresh pages can make the faster
# count look slower (measured: a 2-thread forward at (32, 64, 256, 1) 18x the 1-thread time, so
# the benchmark's timed calls ran on one thread, 37-38 ms against 28-31 pinned to 2), and a
# training loop has re-tried it within its first seconds.
MAX_SETTLE_CALLS = 24


def retrial_calls() -> int:
    from minis2s.threads import ThreadChoice

    return ThreadChoice.EXPLORE_EVERY + 4


def settle_thread_choices(calls) -> None:
    """Run the callables of ``calls`` in turn until every minis2s thread choice has settled (or
    ``MAX_SETTLE_CALLS`` have run), then ``retrial_calls()`` more."""
    from minis2s import threads

    calls = iter(calls)
    for call, _ in zip(calls, range(MAX_SETTLE_CALLS)):
        if all(c["settled"] for c in threads.choices()):
            break
        call()
    for call, _ in zip(calls, range(retrial_calls())):
        call()


KEEP_FREED_MEMORY_HELP = ("glibc's malloc told to keep freed memory (minis2s/allocator.py's keep_freed_memory): "
                          "process-wide, so every row, torch's too, runs with it")


def keep_freed_memory(enabled: bool) -> str | None:
    """``--keep-freed-memory``: minis2s.allocator.keep_freed_memory() for this process (what it
    did, printed), or None when not asked."""
    if not enabled:
        return None
    from minis2s.allocator import keep_freed_memory as keep

    done = keep()
    print(f"keep freed memory: {done}")
    return done
