"""glibc's malloc, told to keep freed memory for the next training step instead of returning it.

Why: a training step allocates and frees the same large arrays every time (the recurrences'
gate caches (T, B, 4H), the gradients, the optimizer's temporaries: tens of MB). glibc serves a
block of ≥ 128 KiB from the heap only once its dynamic mmap threshold has grown past it, and it
gives the top of the heap back to the OS whenever more than twice that threshold lies free there.
So a step can fault the same memory in again, page by page, zeroed by the kernel: measured on the
G2P model, between ~1,400 and ~10,700 page faults a step from one process to the next; with the
two thresholds set (``keep_freed_memory()``) ~70.

The ``minis2s`` command sets it when it starts (minis2s/cli.py; the library itself never does).
Measured on the 2-core Intel Xeon, the whole command `g2p train --train-limit 5000 --max-steps
40`, five pairs in turn (benchmarks/NOTES.md, issue 15, 2026-12-03): with it against
``MINIS2S_KEEP_FREED_MEMORY=0``, wall time 0.94 (0.92-0.97) with the BLAS threads pinned at 2,
0.96 (0.96-0.97) on one thread, system time 1.56 -> 0.67 s; page faults a G2P step 12,200 ->
44. With the measured thread choice the wall ratio varied from pair to pair (0.93-1.17, CPU time
0.87): the choice itself differs from run to run. An earlier session on an AMD EPYC found it
mixed (figures in the notes). benchmarks/g2p_train_speed.py cannot show the effect: torch's
allocations in the same process raise glibc's dynamic thresholds for minis2s's arrays too.

The setting is process-wide and cannot be undone (an explicit ``mallopt`` ends glibc's dynamic
threshold for good), so the library never sets it by itself; a program calls
``keep_freed_memory()`` if it wants it. The user's own choice wins: nothing is changed when
glibc's malloc is tuned through the environment (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``
with ``glibc.malloc``), another allocator is preloaded (``LD_PRELOAD``), or
``MINIS2S_KEEP_FREED_MEMORY=0``. The cost: up to ``trim_threshold`` bytes of freed memory stay
with the process instead of going back to the OS.
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit): bigger blocks still mmap
TRIM_THRESHOLD = 256 * 1024 * 1024  # free memory kept at the heap's top before it is given back
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_",
                 "MALLOC_ARENA_MAX")


def user_choice() -> str | None:
    """Why the allocator is the user's to set (a sentence), or None when it is not."""
    if os.environ.get("MINIS2S_KEEP_FREED_MEMORY", "").strip() == "0":
        return "MINIS2S_KEEP_FREED_MEMORY=0"
    for name in USER_SETTINGS:
        if name in os.environ:
            return f"{name} is set"
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets glibc.malloc"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return "another allocator is preloaded (LD_PRELOAD)"
    return None


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> str:
    """Set glibc's mmap and trim thresholds for this process (see the module's docstring).
    Returns what was done: "set", or why nothing was (the user's choice, not glibc)."""
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int of bytes, got {value!r}")
    if trim_threshold > 2**31 - 1:  # mallopt takes an int
        raise ValueError(f"trim_threshold must be below 2**31, got {trim_threshold}")
    if mmap_threshold > MMAP_THRESHOLD:
        raise ValueError(f"mmap_threshold must be at most {MMAP_THRESHOLD} (glibc's largest), got {mmap_threshold}")
    why = user_choice()
    if why:
        return f"not set: {why}"
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl and macOS have no mallopt to tune
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "not set: the C library is not glibc"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, mmap_threshold) != 1 or mallopt(M_TRIM_THRESHOLD, trim_threshold) != 1:
        return "not set: glibc refused the values"
    return "set"
