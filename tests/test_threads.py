"""BLAS threads per operation (minis2s/threads.py): small GEMMs on one thread, inside minis2s's
calls only; the caller's count restored after each op; the caller's choice (environment,
threadpoolctl, ``set_blas_threads``) always wins. What an op sees is read from inside the op
(a wrapped op records threadpoolctl's view of NumPy's BLAS while it runs)."""
import numpy as np
import pytest
from conftest import SAME_SUMS_F64
from threadpoolctl import threadpool_info, threadpool_limits

from minis2s import nn, threads
from minis2s.nn import layers


def blas_counts():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for v in threads.ENV_VARS:
        monkeypatch.delenv(v, raising=False)
    threads.set_blas_threads("auto")
    yield
    threads.set_blas_threads("auto")


@pytest.fixture
def two_threads():
    """The caller allows 2 BLAS threads (the default on a 2-core machine)."""
    if not blas_counts():
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    with threadpool_limits(2, user_api="blas"):
        yield


def spy_on_linear(monkeypatch) -> list:
    """A list that gets the BLAS thread counts seen inside every Linear forward from now on."""
    seen = []
    real = layers.ops.linear_forward

    def spy(*a, **k):
        seen.append(blas_counts())
        return real(*a, **k)

    monkeypatch.setattr(layers.ops, "linear_forward", spy)
    return seen


def seen_by_linear(monkeypatch, rows: int, n_in: int, n_out: int) -> list:
    """The BLAS thread counts inside one Linear forward of (rows, n_in) -> n_out, and after it."""
    seen = spy_on_linear(monkeypatch)
    lin = nn.Linear(n_in, n_out)
    lin(np.random.default_rng(0).standard_normal((rows, n_in)).astype(np.float32))
    seen.append(blas_counts())
    return seen


def test_the_rule():
    small, large = threads.MEASURED_FROM_MACS - 1, threads.MEASURED_FROM_MACS  # "auto": measured from here
    assert threads.chosen_threads(small, 2) == 1 and threads.chosen_threads(large, 2) == 2
    assert threads.chosen_threads(large, 1) == 1  # never above what the caller allows
    threads.set_blas_threads("size")  # the size rule alone: all threads from SMALL_GEMM_MACS
    assert threads.chosen_threads(threads.SMALL_GEMM_MACS - 1, 2) == 1
    assert threads.chosen_threads(threads.SMALL_GEMM_MACS, 2) == 2
    threads.set_blas_threads(3)
    assert threads.chosen_threads(small, 2) == 2 and threads.chosen_threads(small, 8) == 3
    threads.set_blas_threads(None)
    assert threads.chosen_threads(small, 2) is None
    for bad in (0, -1, True, 1.5, "one"):
        with pytest.raises(ValueError, match="set_blas_threads takes"):
            threads.set_blas_threads(bad)


def test_a_small_op_runs_on_one_thread_and_the_count_is_restored(monkeypatch, two_threads):
    inside, after = seen_by_linear(monkeypatch, 16, 32, 64)  # 32,768 MACs
    assert all(n == 1 for n in inside) and all(n == 2 for n in after)


def test_a_large_op_runs_on_the_count_measured_faster_and_the_count_is_restored(monkeypatch, two_threads):
    """134 M MACs: above the size rule, so ThreadChoice tries 1 and 2 threads in turn, then runs
    the faster (here whichever it is on this machine now), trying the other now and then."""
    threads._choices.clear()
    monkeypatch.setattr(threads, "machine_busy", lambda: False)
    seen = spy_on_linear(monkeypatch)
    lin = nn.Linear(256, 1024)
    x = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
    choice = threads.choice_for("Linear.forward", 512 * 256 * 1024, 2)  # the one the calls will use
    best_before = []
    for _ in range(12):
        best_before.append(choice.best())
        lin(x)
        assert blas_counts() and all(n == 2 for n in blas_counts()), "restored after every call"
    counts = [c[0] for c in seen]
    assert counts[:3] == [1, 2, 1], "the first call (not counted), then both counts tried"
    # past the first trials (at most 3 of each when close) no re-trial is due for 32 calls: each call
    # runs the count then measured faster (which may change from call to call when they are close)
    assert choice.best() in (1, 2) and counts[8:] == best_before[8:], (counts, best_before)


def test_a_threadpoolctl_limit_around_the_call_is_never_raised(monkeypatch):
    if not blas_counts():
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    with threadpool_limits(1, user_api="blas"):
        inside, after = seen_by_linear(monkeypatch, 512, 256, 1024)
    assert all(n == 1 for n in inside) and all(n == 1 for n in after)


def test_the_environment_wins(monkeypatch, two_threads):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    inside, _ = seen_by_linear(monkeypatch, 16, 32, 64)
    assert all(n == 2 for n in inside)


@pytest.mark.parametrize("mode,expected", [(None, 2), (2, 2), (1, 1)])
def test_set_blas_threads(monkeypatch, two_threads, mode, expected):
    threads.set_blas_threads(mode)
    inside, after = seen_by_linear(monkeypatch, 16, 32, 64)
    assert all(n == expected for n in inside) and all(n == 2 for n in after)


def test_an_lstm_step_runs_on_one_thread_and_gives_the_same_numbers(two_threads):
    """The count changes where the GEMMs run, not what they compute: a float64 LSTM gives the
    same outputs and gradients (<= 1e-12 relative: a GEMM split over threads may sum in another
    order) with minis2s's choice as with BLAS left alone."""
    from minis2s.gradcheck import rel_error

    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 16, 24))
    dout = rng.standard_normal((7, 16, 32))

    def run(mode):
        threads.set_blas_threads(mode)
        lstm = nn.LSTM(24, 32, 2, dtype=np.float64, rng=np.random.default_rng(3))
        out, _ = lstm(x)
        dx = lstm.backward(dout)
        return out, dx, [p.grad for p in lstm.parameters()]

    a, b = run("auto"), run(None)
    assert rel_error(a[0], b[0]) <= SAME_SUMS_F64 and rel_error(a[1], b[1]) <= SAME_SUMS_F64
    assert all(rel_error(g, h) <= SAME_SUMS_F64 for g, h in zip(a[2], b[2]))


def test_inside_a_model_call_the_layers_keep_the_models_choice(monkeypatch, two_threads):
    """Only the outermost scope acts: within one call of a large model every layer, its small
    Linear too, runs on the one count the model's ThreadChoice gave (switching between
    consecutive GEMMs wakes the pool and costs more than it saves); a small model runs every
    layer on one thread."""
    from minis2s.models.config import ModelConfig, build_model

    threads._choices.clear()
    monkeypatch.setattr(threads, "machine_busy", lambda: False)
    seen = spy_on_linear(monkeypatch)
    rng = np.random.default_rng(0)
    for hidden, batch, large in ((256, 64, True), (16, 8, False)):  # 16.8 M and 8,192 MACs a step
        model = build_model(ModelConfig(hidden=hidden, layers=1, embedding=8), 12, 9)
        assert (model.step_macs(batch) >= threads.SMALL_GEMM_MACS) == large
        per_call = []
        for _ in range(4):
            seen.clear()
            src, trg = rng.integers(4, 12, (5, batch)), rng.integers(4, 9, (6, batch))
            model(src, trg, 1.0, generator=np.random.default_rng(0))
            counts = {n for c in seen for n in c}
            assert seen and len(counts) == 1, (hidden, seen)
            per_call.append(counts.pop())
            assert blas_counts() and all(n == 2 for n in blas_counts())
        if large:  # the uncounted first call, the trials of 2 and 1, then the faster or another trial
            assert per_call[:3] == [1, 2, 1] and per_call[3] in (1, 2), per_call
        else:
            assert per_call == [1, 1, 1, 1], per_call


# ---- ThreadChoice: the measured choice between 1 thread and all the caller allows ---------------
def run_choice(choice, seconds_of, calls):
    """Drive ``choice`` for ``calls`` calls, each taking seconds_of(count, call index); the counts run."""
    ran = []
    for i in range(calls):
        n = choice.next_count()
        choice.record(n, seconds_of(n, i))
        ran.append(n)
    return ran


def test_thread_choice_tries_both_then_runs_the_faster_and_tries_the_slower_rarely():
    choice = threads.ThreadChoice(2)
    ran = run_choice(choice, lambda n, i: {1: 1.0, 2: 4.0}[n], 2000)
    assert ran[:3] == [1, 2, 1] and choice.best() == 1, "4x apart: one trial each is enough"
    trials = [i for i, n in enumerate(ran) if n == 2 and i >= 8]
    gaps = np.diff(trials)
    # 4x slower: the interval doubles from EXPLORE_EVERY with each confirming trial, up to
    # EXPLORE_EVERY * 4 calls (+1: the trial itself)
    every = threads.ThreadChoice.EXPLORE_EVERY
    assert trials[0] == every + 3 and gaps[0] == 2 * every + 1, (trials[:2], gaps[:1])
    assert len(trials) > 10 and np.all(gaps[1:] == every * 4 + 1), gaps
    cost = sum({1: 1.0, 2: 4.0}[n] for n in ran[8:]) / (len(ran) - 8)
    assert cost < 1.03, "trials of the slower count cost at most ~3%"


def test_one_slow_trial_does_not_banish_the_faster_count():
    """2 threads take half the time, but their first trial hits an idle pool's wake-up (9x): one
    thread runs next, 2 threads are tried again after EXPLORE_EVERY calls, not 9 x that, and win."""
    every = threads.ThreadChoice.EXPLORE_EVERY
    choice = threads.ThreadChoice(2)
    ran = run_choice(choice, lambda n, i: 9.0 if (n, i) == (2, 1) else {1: 1.0, 2: 0.5}[n], 200)
    assert ran[:3] == [1, 2, 1] and ran[3:every + 3] == [1] * every
    assert ran[every + 3] == 2 and choice.best() == 2 and ran[every + 3:].count(2) >= 160


def test_thread_choice_tries_counts_within_close_in_turn():
    choice = threads.ThreadChoice(2)
    ran = run_choice(choice, lambda n, i: {1: 1.0, 2: 0.8}[n], 200)
    assert ran[:7] == [1, 2, 1, 1, 2, 1, 2], "the uncounted call, then the fewer-tried count until 3 each"
    assert choice.best() == 2 and ran[7:].count(2) >= 185, "then the faster, 1 thread tried every ~40 calls"


def test_thread_choice_on_a_busy_machine_tries_all_threads_only_later():
    """Beside a busy core a call on all threads can cost several times one thread's: a choice
    made while the load was high runs one thread first and tries all threads after EXPLORE_EVERY
    calls."""
    choice = threads.ThreadChoice(2, busy=True)
    ran = run_choice(choice, lambda n, i: {1: 1.0, 2: 5.0}[n], 400)
    first = ran.index(2)
    assert first == threads.ThreadChoice.EXPLORE_EVERY + 2 and choice.best() == 1  # + the uncounted, the first
    assert ran.count(2) <= 4


def test_thread_choice_caps_the_interval_and_ignores_each_counts_first_call():
    choice = threads.ThreadChoice(2)
    # the first call on 1 thread is 1000x slow (compilation): it must not count
    ran = run_choice(choice, lambda n, i: 1000.0 if i == 0 else {1: 1.0, 2: 100.0}[n], 3000)
    assert choice.best() == 1 and choice.seconds[1] == 1.0
    trials = [i for i, n in enumerate(ran) if n == 2 and i >= 8]
    gaps = np.diff(trials)  # doubling from EXPLORE_EVERY (65, 129, 257), then the cap
    assert np.all(gaps[:3] == threads.ThreadChoice.EXPLORE_EVERY * np.array([2, 4, 8]) + 1), gaps
    assert len(gaps) > 3 and np.all(gaps[3:] == threads.ThreadChoice.MAX_INTERVAL + 1), gaps


def test_thread_choice_follows_a_change_of_load():
    """2 threads win on a quiet machine; another process takes a core at call 500 and 2 threads
    become 3x slower; it leaves at call 1500: each time the choice turns within ~150 calls."""
    def seconds(n, i):
        busy = 500 <= i < 1500
        return {1: 1.0, 2: 3.0 if busy else 0.6}[n]

    choice = threads.ThreadChoice(2)
    ran = run_choice(choice, seconds, 2500)
    assert ran[400:500].count(2) >= 95
    assert ran[600:1500].count(1) >= 880, "busy: one thread"
    assert ran[1700:2500].count(2) >= 780, "quiet again: both threads"


class FakeClock:
    """time.monotonic for a ThreadChoice: a driven call of relative time r advances it r x ``step`` s."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        return self.now


def run_timed_choice(choice, clock, seconds_of, calls):
    ran = []
    for i in range(calls):
        n = choice.next_count()
        choice.record(n, seconds_of(n, i))
        clock.now += clock.step * seconds_of(n, i)
        ran.append(n)
    return ran


def test_between_the_sizes_all_threads_are_tried_only_every_gap_seconds():
    """From MEASURED_FROM_MACS to SMALL_GEMM_MACS (gap_s): beside a busy core, where all threads
    are 3x slower, they are tried at most once every gap_s seconds of calls; per call count alone
    (gap 0) several times as often."""
    slow = {1: 1.0, 2: 3.0}
    gap = threads.TRIAL_GAP_S
    clock = FakeClock(0.01)  # a one-thread call takes 10 ms: 2,000 calls ~20 s
    ran = run_timed_choice(threads.ThreadChoice(2, gap_s=gap, clock=clock), clock, lambda n, i: slow[n], 2000)
    seconds = 0.01 * sum(slow[n] for n in ran)
    assert ran[:5] == [1, 2, 2, 1, 1], "a trial is two calls: the first after a change of count is not timed"
    assert 1 < trials_of(ran, 2) <= seconds / gap + 1 and ran.count(2) == 2 * trials_of(ran, 2), ran.count(2)
    clock = FakeClock(0.01)
    ungated = run_timed_choice(threads.ThreadChoice(2, clock=clock), clock, lambda n, i: slow[n], 2000)
    assert trials_of(ungated, 2) >= 3 * trials_of(ran, 2)


def trials_of(ran, n):
    """How many runs of consecutive calls on ``n`` threads ``ran`` holds."""
    return sum(1 for i, m in enumerate(ran) if m == n and (i == 0 or ran[i - 1] != n))


def test_between_the_sizes_the_call_after_a_change_of_count_is_not_timed():
    """2 threads twice as fast, but the first call after each change of count pays 10x (the
    pool waking or winding down): one-call trials would find 2 threads slower; two-call ones
    find them faster."""
    clock = FakeClock(0.01)
    choice = threads.ThreadChoice(2, gap_s=threads.TRIAL_GAP_S, clock=clock)
    last = [1]

    def seconds(n, i):
        t = {1: 1.0, 2: 0.5}[n] * (10.0 if n != last[0] else 1.0)
        last[0] = n
        return t

    ran = run_timed_choice(choice, clock, seconds, 400)
    assert choice.best() == 2 and ran[20:].count(2) >= 350  # one thread re-tried, two calls, every ~32


def test_between_the_sizes_faster_threads_are_not_held_back():
    """Quiet, all threads faster: the gap only spaces their trials while they are not the faster
    (the close phase's turns included), then they run."""
    clock = FakeClock(0.01)
    choice = threads.ThreadChoice(2, gap_s=threads.TRIAL_GAP_S, clock=clock)
    ran = run_timed_choice(choice, clock, lambda n, i: {1: 1.0, 2: 0.5}[n], 2000)
    assert ran[:5] == [1, 2, 2, 1, 1] and choice.best() == 2 and ran[5:].count(2) >= 1900


def test_between_the_sizes_a_busy_prior_waits_gap_seconds_before_the_first_trial():
    clock = FakeClock(0.01)
    choice = threads.ThreadChoice(2, busy=True, gap_s=threads.TRIAL_GAP_S, clock=clock)
    ran = run_timed_choice(choice, clock, lambda n, i: {1: 1.0, 2: 3.0}[n], 1000)
    assert ran.index(2) in (500, 501)  # 5 s of one-thread calls of 10 ms first (float sums: 500 or 501)


def test_the_size_mode_keeps_the_size_rule_whatever_the_timings(monkeypatch, two_threads):
    """``set_blas_threads("size")``: a large op always on every thread allowed, nothing measured
    (the thread count can change a GEMM's last bits: this is the mode for runs that repeat them)."""
    threads._choices.clear()
    threads.set_blas_threads("size")
    seen = spy_on_linear(monkeypatch)
    lin = nn.Linear(256, 1024)
    x = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
    for _ in range(6):
        lin(x)
    assert [c[0] for c in seen] == [2] * 6 and not threads._choices
    monkeypatch.setenv(threads.MODE_VAR, "size")
    assert threads._mode_from_env() == "size"
