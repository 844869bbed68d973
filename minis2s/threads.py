"""BLAS threads per operation, inside minis2s's own calls only: small GEMMs on one thread,
large ones on as many as are measured faster.

Why: OpenBLAS splits even a small GEMM — one step of a recurrence, (B, H) · (H, 4H) — over every
core, and its threads spin between the many small GEMMs of a sequence. On 2 cores that made the
reverse demo slower than one thread, and far slower beside another busy process (the README's
BLAS threads note has the figures and how they were measured). Large GEMMs (a long sequence's
input projection, a big batch) gain from all cores on a quiet machine — and lose beside a busy
one: G2P training ran 1.9x slower on 2 threads than on 1 while another job held a core.

How: each minis2s call that runs GEMMs opens ``blas_threads(macs, work, kind)`` with the size of
its typical GEMM in multiply-adds: a model's forward, backward and decoding calls with that of
one step of its decoder's recurrence (B × H × G), and a layer used on its own (LSTM, GRU, RNN,
Linear, Attention) with its own. Below ``MEASURED_FROM_MACS`` the call runs on one BLAS thread.
Above it, ``ThreadChoice`` measures (below ``SMALL_GEMM_MACS`` with trials of all threads spaced
in time, ``TRIAL_GAP_S``): per kind of call and size class it keeps the mean wall time
per unit of ``work`` (the call's tokens) on one thread and on all the caller allows, runs the
faster, and tries the other now and then (the worse it was, the more rarely), so a change of
load is followed within a few hundred calls. The thread count can change a float GEMM's last
bits (OpenBLAS blocks the sums by its thread count: up to ~4e-7 relative in float32 at some
shapes, measured), so a measured choice, which follows the load, does not repeat a run bit for
bit; ``set_blas_threads("size")`` (or ``MINIS2S_BLAS_THREADS=size``) keeps the size rule alone,
whose counts depend on sizes only, for runs that must. Only the outermost scope acts — inside a model call the layers
keep the model's choice — because switching the count between consecutive GEMMs costs more than
it saves (the pool's threads go to sleep and must be woken; the measurement: benchmarks/NOTES.md).
The count is set through ``threadpoolctl`` (the well-kept library for exactly this) on the BLAS
libraries NumPy loaded, and restored when the call returns: nothing changes for the rest of the
caller's process.

The caller's choice wins:
* ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` or ``BLIS_NUM_THREADS`` set
  in the environment: minis2s leaves the thread count alone;
* a ``threadpoolctl.threadpool_limits(...)`` around the call: minis2s never goes above the count
  it finds, it only lowers it;
* ``set_blas_threads(n)``: minis2s's ops use at most n threads (always n when allowed, whatever
  their size); ``set_blas_threads(None)`` leaves BLAS alone; ``"auto"`` (the default) is the
  rule above, ``"size"`` its size rule without the measuring. The environment variable
  ``MINIS2S_BLAS_THREADS`` (``auto``, ``size``, ``none`` or n) sets the starting mode of a process.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import time

ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
# The size rule ("size" mode): one thread below this many multiply-adds per step GEMM: between the
# reverse demo's step GEMM (B·H·G = 4.2 M), where 2 threads barely helped on the quiet 2-core
# machine and cost several times its time beside a busy core, and G2P's (75.5 M), where they
# helped when quiet (figures: the README's BLAS threads note, benchmarks/NOTES.md). Alone, back to
# back, 2 threads win from much smaller GEMMs (benchmarks/blas_threads.py); amid the rest of a
# training step they help less and, when another process holds a core, cost far more.
SMALL_GEMM_MACS = 16_000_000
# "auto" mode measures from MEASURED_FROM_MACS (ThreadChoice), but below SMALL_GEMM_MACS tries all
# threads only every TRIAL_GAP_S seconds until they have proved faster: beside a busy core each
# such trial costs a few times a one-thread call, and OpenBLAS's worker then spins on the busy core
# for a while after it (the reverse demo, 4.2 M, measured 1.14x one thread busy when these sizes
# were tried by call count alone; benchmarks/NOTES.md). Quiet, two threads run these sizes ~20-35%
# faster (the demo 0.82-0.88x one thread; the (32, 16, 128, 2) LSTM 7.7 ms against 12.3).
MEASURED_FROM_MACS = 1_000_000
TRIAL_GAP_S = 5.0

MODE_VAR = "MINIS2S_BLAS_THREADS"


def _mode_from_env():
    text = os.environ.get(MODE_VAR, "auto").strip().lower()
    if text in ("auto", "size"):
        return text
    if text in ("none", ""):
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"{MODE_VAR} must be 'auto', 'size', 'none' or an int >= 1, got {os.environ[MODE_VAR]!r}")


_mode: list = [_mode_from_env()]  # "auto", "size", an int >= 1, or None
_libs: list = []  # [threadpoolctl LibController of each BLAS NumPy loaded], filled on first use
_found: list = [False]
_depth: list = [0]  # how many blas_threads scopes are open: only the outermost one acts


def set_blas_threads(mode) -> None:
    """"auto" (the default: one thread for small GEMMs, the count measured faster for large
    ones), "size" (one thread for small GEMMs, all allowed for large ones: the same counts, and
    so the same bits, whatever the load), an int n >= 1 (at most n threads in minis2s's ops), or
    None (minis2s never touches the BLAS thread count)."""
    if mode not in ("auto", "size", None) and (isinstance(mode, bool) or not isinstance(mode, int) or mode < 1):
        raise ValueError(f"set_blas_threads takes 'auto', 'size', None or an int >= 1, got {mode!r}")
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
    """The thread count the size rule gives a GEMM of ``macs`` multiply-adds when the caller
    allows ``allowed`` (None: leave it as it is); in "auto" mode a large one's ``allowed`` is
    what ``ThreadChoice`` then chooses between."""
    mode = _mode[0]
    if mode is None or any(os.environ.get(v) for v in ENV_VARS):
        return None
    if mode in ("auto", "size"):
        return 1 if macs < (MEASURED_FROM_MACS if mode == "auto" else SMALL_GEMM_MACS) else allowed
    return min(mode, allowed)


class ThreadChoice:
    """One kind of call at one size: which of 1 and ``allowed`` threads runs it faster.

    ``seconds[n]`` is the running mean (exponential, weight ``SMOOTHING`` on the newest) of the
    wall time per unit of work on n threads; a trial of the slower count replaces its figure
    (trials are rare, and the load may have changed since the last).

    The first call runs on one thread and is not counted (it may hold compilation or cold
    caches). Then ``allowed`` is tried at once — or, when the machine was ``busy`` as the choice
    was made, after ``EXPLORE_EVERY`` calls, since beside a busy core a call on all threads can
    cost several times one thread's (measured: 5.6x for G2P training) — and one thread; counts
    within ``CLOSE`` of each other are tried in turn until each has ``TRIALS`` calls. Then the
    faster runs, and the slower is tried again after ``EXPLORE_EVERY`` × (how many times slower
    it was) calls, at most ``MAX_INTERVAL``: a count twice as slow every 64 calls, one 16 times
    as slow every 512, so trials cost at most ~3% of the time once the interval has grown. One
    slow trial does not banish a count for that long: the interval grows from ``EXPLORE_EVERY``
    by doubling with each trial that confirms the count slower, up to that bound (measured: one
    2-thread trial of an LSTM forward right after an idle pause took 9x the 1-thread time, and
    kept the 2x faster count away for 288 calls); the early, closer trials cost more (a count 16x
    slower: 5 trials in its first ~1,000 calls, ~7%)."""

    TRIALS, CLOSE, SMOOTHING, EXPLORE_EVERY, MAX_INTERVAL = 3, 1.5, 0.3, 32, 512

    def __init__(self, allowed: int, busy: bool = False, gap_s: float = 0.0, clock=time.monotonic):
        self.counts = (1, allowed)
        self.busy = busy
        # gap_s > 0 (MEASURED_FROM_MACS): all threads are tried only when gap_s seconds have passed
        # since they last ran (or, when busy, since the choice was made), unless they are the
        # faster; and the first call after a change of count is not timed: at these sizes it
        # carries the pool's wake-up or wind-down (a one-call trial of 2 threads measured them
        # 12% slower than one where a steady run was 27% faster), so a trial is two calls
        self.gap_s, self.clock = gap_s, clock
        self.last_allowed = clock() if busy else -math.inf  # when a trial of all threads last began
        self.last_run = 1  # the count of the last call
        self.seconds: dict[int, float] = {}
        self.samples = dict.fromkeys(self.counts, 0)  # counted calls of each
        self.calls = 0
        self.since_trial = 0
        self.confirmed = 0  # trials in a row that found the slower count slower still

    def next_count(self) -> int:
        n = self._next_count()
        one, allowed = self.counts
        if n == allowed != self.last_run and self.gap_s > 0 and self.best() != allowed:  # a trial begins
            if self.clock() - self.last_allowed < self.gap_s:
                return one
            self.last_allowed = self.clock()
        return n

    def _next_count(self) -> int:
        one, allowed = self.counts
        if self.calls == 0:
            return one  # the uncounted first call
        if allowed not in self.seconds:
            return one if self.busy and self.since_trial < self.EXPLORE_EVERY else allowed
        if one not in self.seconds:
            return one
        best, other, ratio = self._ranked()
        if ratio < self.CLOSE and min(self.samples.values()) < self.TRIALS:
            return min(self.counts, key=lambda n: self.samples[n])  # close: more trials, in turn
        if self.since_trial >= min(self.MAX_INTERVAL, self.EXPLORE_EVERY * min(ratio, 2.0 ** self.confirmed)):
            return other
        return best

    def record(self, n: int, seconds_per_work: float) -> None:
        self.calls += 1
        switched, self.last_run = n != self.last_run, n
        if self.calls == 1 or (switched and self.gap_s > 0):
            return  # the first call: compilation, cold caches; at gap_s sizes, a change of count
        best = self.best()
        trial = n not in self.seconds or (best is not None and n != best)
        self.since_trial = 0 if trial else self.since_trial + 1
        self.samples[n] += 1
        old = self.seconds.get(n)
        if old is None or trial:  # a trial: rare, so its news replaces the old
            self.seconds[n] = seconds_per_work
        else:
            self.seconds[n] = old + self.SMOOTHING * (seconds_per_work - old)
        if trial and best is not None:
            self.confirmed = self.confirmed + 1 if self.best() == best else 0

    def best(self):
        """The count it would run now outside a trial (None before both were tried)."""
        if len(self.seconds) < len(self.counts):
            return None
        return min(self.counts, key=lambda n: self.seconds[n])

    def _ranked(self):
        """(the faster count, the slower, how many times slower), both counts timed."""
        best, other = sorted(self.counts, key=lambda n: self.seconds[n])
        return best, other, self.seconds[other] / max(self.seconds[best], 1e-12)

    def settled(self) -> bool:
        """Whether the first trials are over: both counts timed, and, where they were close,
        each ``TRIALS`` times (from here on only the rare re-trials run the slower count)."""
        if self.best() is None:
            return False
        return self._ranked()[2] >= self.CLOSE or min(self.samples.values()) >= self.TRIALS


def machine_busy() -> bool:
    """Whether other work holds about a core already: the 1-minute load average at least the
    number of cores this process may use minus one half (a prior only: ThreadChoice measures)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        return os.getloadavg()[0] >= cores - 0.5
    except OSError:  # pragma: no cover
        return False


_choices: dict = {}  # (kind, size class, allowed) -> ThreadChoice


def choice_for(kind: str, macs: int, allowed: int) -> ThreadChoice:
    """The ThreadChoice of ``kind`` (e.g. "Seq2Seq.forward") for GEMMs of about ``macs``
    multiply-adds (one size class per power of two) when ``allowed`` threads are allowed."""
    key = (kind, int(math.log2(max(macs, 1))), allowed)
    if key not in _choices:
        _choices[key] = ThreadChoice(allowed, busy=machine_busy(), gap_s=TRIAL_GAP_S if macs < SMALL_GEMM_MACS else 0.0)
    return _choices[key]


def choices() -> list[dict]:
    """What the measured choices stand at, one dict per (kind, size class, allowed): the kind,
    log2 of its GEMM's multiply-adds, the counts, their seconds per unit of work, calls so far,
    whether the first trials are over, and the count it runs now (benchmarks record these)."""
    return [{"kind": kind, "log2_macs": size, "allowed": allowed, "seconds_per_work": dict(c.seconds),
             "calls": c.calls, "settled": c.settled(), "best": c.best()}
            for (kind, size, allowed), c in _choices.items()]


@contextlib.contextmanager
def blas_threads(macs: int, work: float = 1.0, kind: str = "op"):
    """Within this block NumPy's BLAS runs on the threads ``chosen_threads`` gives, or for a
    large GEMM on those ``ThreadChoice`` measures faster for ``kind`` (unless an enclosing scope
    has chosen already). ``work``: the block's amount of work (its tokens) the time is divided by."""
    changed, measured = [], None
    if _depth[0] == 0:
        libs = _blas_libs()
        for lib in libs:
            current = lib.num_threads
            want = chosen_threads(int(macs), current)
            if want is not None and want > 1 and _mode[0] == "auto" and len(libs) == 1:
                measured = choice_for(kind, int(macs), want)
                want = measured_count = measured.next_count()
            if want is not None and want != current:
                lib.set_num_threads(want)
                changed.append((lib, current))
    _depth[0] += 1
    t0 = time.perf_counter()
    try:
        yield
        if measured is not None:  # a call that raised is not a timing
            measured.record(measured_count, (time.perf_counter() - t0) / max(float(work), 1.0))
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
    the call runs in ``blas_threads(self.step_macs(B), work=its size, kind=the method)``."""
    def decorate(method):
        kind = method.__qualname__

        @functools.wraps(method)
        def scoped(self, first, *args, **kwargs):
            batch = first.shape[batch_axis] if getattr(first, "ndim", 0) > batch_axis else 1
            with blas_threads(self.step_macs(batch), work=getattr(first, "size", 1), kind=kind):
                return method(self, first, *args, **kwargs)
        return scoped
    return decorate
