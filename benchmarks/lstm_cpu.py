"""CPU LSTM training step (forward + backward): NumPy reference, fused fast path, torch.nn.LSTM.

    python benchmarks/lstm_cpu.py                 # the issue's configurations, 7 repeats
    python benchmarks/lstm_cpu.py --repeats 3 --configs 32,64,256,1
    python benchmarks/lstm_cpu.py --versions      # also every kernels/lstm_cpu.py version
    python benchmarks/lstm_cpu.py --busy          # with one core kept busy by another process
    python benchmarks/lstm_cpu.py --keep-freed-memory   # glibc's malloc told to keep freed memory

    OPENBLAS_NUM_THREADS=1 python benchmarks/lstm_cpu.py --clock cpu   # one core, CPU time

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/lstm_cpu.py
        # where the machine image pins OpenBLAS to older kernels (see blas_kernel): let it pick

For each (T, B, H, layers) (input size I = H, float32): builds one minis2s.nn.LSTM and one
torch.nn.LSTM with the same weights, *validates first* (fast path vs reference, reference vs
torch: out and every weight gradient), then times forward and backward of every path in the
same process, interleaved (ref, fast, torch, sgemm, next repeat starts one later; each timed run
after 0.3 s of idle cores and one untimed run of the same implementation), and reports medians.
Threads: NumPy's BLAS uses OPENBLAS_NUM_THREADS (default: every core, 2 here) and torch is given
the same number. ``--clock cpu`` (one thread only) times process CPU time instead of
wall time: on a machine shared with other jobs it measures the work, not the waiting.
``--busy``: during the timed runs (not the validation) another process spins on one core
(benchmarks/machine.py's ``busy_core``), as a user's other work would. ``--versions``: every
kernels/lstm_cpu.py version as the default of the same nn.LSTM, validated like the default first.

FLOPs per layer: forward 2·T·B·4H·(I+H) (input and recurrent GEMMs), backward twice that (dx and
dW for each of the two). GFLOP/s = FLOPs / median time; "peak" is a float32 2048³ matmul timed in
the same interleaved loop, so it sees the same machine load; "% peak" is an implementation's
GFLOP/s over it. "bound" is the fast/torch ratio an
LSTM built on that sgemm would reach if every one of its FLOPs ran at the peak and its pointwise
work cost nothing: where it is above a target ratio, no kernel on NumPy's BLAS can reach it here.

Prints a table, writes benchmarks/results/lstm_cpu_<time>_<threads>t_<clock>.json; never passes
or fails on time. The
functions are importable (``run_benchmark``, ``time_interleaved``, ...) for benchmarks/lstm_step.py.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import (
    KEEP_FREED_MEMORY_HELP,
    MAX_SETTLE_CALLS,
    blas_kernel,
    busy_core,
    keep_freed_memory,
    retrial_calls,
    settle_thread_choices,
)
from minis2s import dispatch
from minis2s.gradcheck import rel_error
from minis2s.nn import LSTM

CONFIGS = [(32, 64, 256, 1), (32, 64, 512, 1), (32, 16, 128, 2)]  # (T, B, H, layers)
RESULTS = ROOT / "benchmarks" / "results"
THREADS = int(os.environ.get("OPENBLAS_NUM_THREADS", os.cpu_count() or 1))  # NumPy's BLAS; torch gets as many
TORCH_THREADS = THREADS  # unless --torch-threads
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def lstm_flops(T, B, I, H, layers):
    """(forward, backward) FLOPs of the GEMMs of an LSTM stack; layer l > 0 reads H features."""
    fwd = sum(2 * T * B * 4 * H * ((I if layer == 0 else H) + H) for layer in range(layers))
    return fwd, 2 * fwd


def make_problem(T, B, H, layers, seed=0, dtype=np.float32):
    """A minis2s LSTM and a torch LSTM with the same weights, an input and an upstream gradient."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ref = torch.nn.LSTM(H, H, layers).to(torch.float64 if dtype == np.float64 else torch.float32)
    ours = LSTM(H, H, layers, dtype=dtype)
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = rng.standard_normal((T, B, H)).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    return {"shape": (T, B, H, layers), "ours": ours, "torch": ref, "x": x, "dout": dout}


def minis2s_step(problem, fast: bool):
    """One forward + backward of the minis2s LSTM on the chosen path -> (forward s, backward s)."""
    m, x, dout = problem["ours"], problem["x"], problem["dout"]
    dispatch.set_enabled(fast)
    try:
        m.zero_grad()
        t0 = clock()
        m(x)
        t1 = clock()
        dx = m.backward(dout)
        t2 = clock()
    finally:
        dispatch.set_enabled(None)
    return t1 - t0, t2 - t1, dx


def torch_step(problem, onednn=True):
    """One forward + backward of torch.nn.LSTM (dx too, as minis2s computes it) -> seconds.

    By default torch runs a float32 CPU LSTM as oneDNN's whole-sequence RNN primitive
    (``aten::mkldnn_rnn_layer`` and its backward, seen in torch.profiler at all three shapes);
    ``onednn=False`` turns oneDNN off, and torch runs its own ATen loop instead: one input GEMM,
    then a GEMM (MKL) and a fused pointwise op per step, the algorithm minis2s runs."""
    import torch

    m = problem["torch"]
    x = torch.from_numpy(problem["x"]).requires_grad_(True)
    dout = torch.from_numpy(problem["dout"])
    for p in m.parameters():
        p.grad = None
    with torch.backends.mkldnn.flags(enabled=onednn):
        t0 = clock()
        out, _ = m(x)
        t1 = clock()
        out.backward(dout)
        t2 = clock()
    return t1 - t0, t2 - t1, x.grad


def with_blas_threads(n, fn, *args, **kwargs):
    """fn(*args) with minis2s's thread mode set to n (its measured choice bypassed), restored after."""
    from minis2s import threads

    old = threads.get_blas_threads()
    threads.set_blas_threads(n)
    try:
        return fn(*args, **kwargs)
    finally:
        threads.set_blas_threads(old)


def problem_arrays(problem, key, make):
    """problem[key], made once by make(rng, T, B, H, layers) from the problem's shape."""
    if key not in problem:
        problem[key] = make(np.random.default_rng(1), *problem["shape"])
    return problem[key]


def gemms_in_parallel(problem, parts: int = THREADS):
    """The fast path's GEMMs alone for ``parts`` slices of the batch (B / parts rows each), every
    slice in its own Python thread with one BLAS thread, all at once -> (forward s, backward s,
    None): the floor of a schedule that splits one layer's batch over the cores (rows of a
    recurrence are independent), where each GEMM is smaller than the whole batch's."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    T, B, H, layers = problem["shape"]
    if "parts" not in problem:
        problem["parts"] = [{"shape": (T, max(B // parts, 1), H, layers)} for _ in range(parts)]
        problem["pool"] = ThreadPoolExecutor(parts - 1) if parts > 1 else None
    pieces, pool = problem["parts"], problem["pool"]
    with threadpool_limits(1, user_api="blas"):
        t0 = clock()
        futures = [pool.submit(gemms_alone, piece, None) for piece in pieces[1:]] if pool else []
        f0, b0, _ = gemms_alone(pieces[0], None)
        for f in futures:
            f.result()
        t1 = clock()
    # the wall time of all parts, split into forward and backward as the first part's
    return (t1 - t0) * f0 / max(f0 + b0, 1e-12), (t1 - t0) * b0 / max(f0 + b0, 1e-12), None


def layer_gemm_arrays(rng, T, B, I, H, f32=np.float32):
    """The operands of one LSTM layer's GEMMs (``layer_gemms``) for T steps of B rows, input I, hidden H."""
    return {
        "x": rng.standard_normal((T * B, I)).astype(f32), "w_ih": rng.standard_normal((4 * H, I)).astype(f32),
        "w_hh_t": np.ascontiguousarray(rng.standard_normal((4 * H, H)).astype(f32).T),
        "w_hh": rng.standard_normal((4 * H, H)).astype(f32), "h": rng.standard_normal((T + 1, B, H)).astype(f32),
        "xg": np.empty((T * B, 4 * H), f32), "hg": np.empty((B, 4 * H), f32), "dh": np.empty((B, H), f32),
        "dg": rng.standard_normal((T, B, 4 * H)).astype(f32), "T": T,
    }


def layer_gemms(a) -> tuple[float, float]:
    """The GEMMs of one layer's forward + backward on the fast path, with the same shapes, operand
    layouts and NumPy calls (minis2s/ops/recurrent.py) and nothing between them, on the arrays of
    ``layer_gemm_arrays`` -> (forward s, backward s)."""
    T, x, dg = a["T"], a["x"], a["dg"]
    dg2 = dg.reshape(-1, dg.shape[2])
    t0 = clock()
    np.matmul(x, a["w_ih"].T, out=a["xg"])  # the input GEMM
    for t in range(T):
        np.matmul(a["h"][t], a["w_hh_t"], out=a["hg"])  # a step GEMM
    t1 = clock()
    for t in range(T - 1, -1, -1):
        np.matmul(dg[t], a["w_hh"], out=a["dh"])  # a backward step GEMM
    dg2.T @ x  # dW_ih
    dg2.T @ a["h"][:T].reshape(-1, a["h"].shape[2])  # dW_hh
    dg2 @ a["w_ih"]  # dx
    return t1 - t0, clock() - t1


def gemms_alone(problem, threads: int | None):
    """The GEMMs one forward + backward of the fast path runs (``layer_gemms`` for each layer), on
    ``threads`` BLAS threads -> (forward s, backward s, None). What no pointwise kernel, time loop
    or thread choice can go below while it builds on these GEMMs: the benchmark's "GEMM floor"."""
    from threadpoolctl import threadpool_limits

    def make(rng, T, B, H, layers):
        return [layer_gemm_arrays(rng, T, B, H, H)] * layers  # the same operands for every layer

    arrays = problem_arrays(problem, "gemm_arrays", make)
    with threadpool_limits(threads, user_api="blas") if threads else contextlib.nullcontext():
        times = [layer_gemms(a) for a in arrays]
    return sum(f for f, _ in times), sum(b for _, b in times), None


_POINTWISE_LOOPS: list = []


def _pointwise_loops():
    """(forward, backward): every step's fused kernel of the fast path's default version, in a
    compiled loop over t, and nothing else (no GEMM, no interpreter between steps)."""
    if not _POINTWISE_LOOPS:
        from minis2s.kernels import lstm_cpu
        from numba import njit
        from numba.extending import register_jitable

        steps = lstm_cpu.VERSIONS[lstm_cpu.DEFAULT_VERSION]
        fwd, bwd = register_jitable(steps.forward_step.py_func), register_jitable(steps.backward_step.py_func)

        @njit(nogil=True, error_model="numpy")
        def forward_all(hg, hs, xg, out, lengths, bias, cs, tanh_c):
            for t in range(xg.shape[0]):
                fwd(t, hg, hs, xg, out, lengths, bias, cs, tanh_c)

        @njit(nogil=True, error_model="numpy")
        def backward_all(dh, dc, dh_n, dout, da, lengths, hs, gates, cs, tanh_c):
            for t in range(da.shape[0] - 1, -1, -1):
                bwd(t, dh, dc, dh_n, dout, True, da, da, lengths, hs, gates, cs, tanh_c)

        _POINTWISE_LOOPS.extend([forward_all, backward_all])
    return _POINTWISE_LOOPS


def pointwise_alone(problem):
    """The fused pointwise kernels one forward + backward of the fast path runs (every step of
    every layer, one thread), without the GEMMs -> (forward s, backward s, None). The kernels'
    inputs are random gate pre-activations: the same work per element as in the LSTM."""
    def make(rng, T, B, H, layers, f32=np.float32):
        return {
            "hg": rng.standard_normal((B, 4 * H)).astype(f32), "hs": rng.standard_normal((T + 1, B, H)).astype(f32),
            "xg0": rng.standard_normal((T, B, 4 * H)).astype(f32), "xg": np.empty((T, B, 4 * H), f32),
            "out": np.empty((T, B, H), f32), "lengths": np.full(B, T, np.int64), "bias": rng.standard_normal(4 * H).astype(f32),
            "cs": rng.standard_normal((T + 1, B, H)).astype(f32), "tanh_c": np.empty((T, B, H), f32),
            "dh": rng.standard_normal((B, H)).astype(f32), "dc": np.empty((B, H), f32),
            "dout": rng.standard_normal((T, B, H)).astype(f32), "da": np.empty((T, B, 4 * H), f32), "layers": layers,
        }

    a = problem_arrays(problem, "pointwise_arrays", make)
    forward_all, backward_all = _pointwise_loops()
    fwd = bwd = 0.0
    for _ in range(a["layers"]):
        a["xg"][...] = a["xg0"]  # the kernel overwrites its gates in place: the same inputs every time
        t0 = clock()
        forward_all(a["hg"], a["hs"], a["xg"], a["out"], a["lengths"], a["bias"], a["cs"], a["tanh_c"])
        t1 = clock()
        a["dc"][...] = 0.5
        t2 = clock()
        backward_all(a["dh"], a["dc"], a["dh"], a["dout"], a["da"], a["lengths"], a["hs"], a["xg"], a["cs"], a["tanh_c"])
        t3 = clock()
        fwd, bwd = fwd + (t1 - t0), bwd + (t3 - t2)
    return fwd, bwd, None


_SGEMM_ARRAYS: dict = {}


def sgemm_step(n=2048):
    """One float32 n×n×n matmul -> (seconds, 0, None); 2n³ FLOPs."""
    if n not in _SGEMM_ARRAYS:
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
        _SGEMM_ARRAYS[n] = (a, b, np.empty((n, n), dtype=np.float32))
    a, b, c = _SGEMM_ARRAYS[n]
    t0 = clock()
    np.matmul(a, b, out=c)
    return clock() - t0, 0.0, None


def validate(problem):
    """Relative errors of the fast path and of torch against the reference: out, dx, every grad."""
    m = problem["ours"]
    results = {}
    for name, fast in (("reference", False), ("fast", True)):
        dispatch.set_enabled(fast)
        try:
            m.zero_grad()
            out, _ = m(problem["x"])
            dx = m.backward(problem["dout"])
        finally:
            dispatch.set_enabled(None)
        results[name] = {"out": out, "dx": dx, **{k: p.grad.copy() for k, p in m.named_parameters()}}
    import torch

    tm = problem["torch"]
    for name, onednn in (("torch", True), ("torch without oneDNN", False)):
        for p in tm.parameters():
            p.grad = None
        x = torch.from_numpy(problem["x"]).requires_grad_(True)
        with torch.backends.mkldnn.flags(enabled=onednn):
            out, _ = tm(x)
            out.backward(torch.from_numpy(problem["dout"]))
        results[name] = {"out": out.detach().numpy(), "dx": x.grad.numpy().copy(),
                         **{k: p.grad.numpy().copy() for k, p in tm.named_parameters()}}
    ref = results["reference"]
    return {name: max(rel_error(results[name][k], ref[k]) for k in ref)
            for name in ("fast", "torch", "torch without oneDNN")}


# float32, relative to the reference (README's bounds)
MAX_ERROR = {"fast": 1e-5, "torch": 1e-4, "torch without oneDNN": 1e-4}


def check_validation(name, err, bound):
    """Stop before timing anything that computes the wrong numbers."""
    if not err <= bound:
        raise SystemExit(f"{name}: relative error {err:.2e} against the reference exceeds {bound:.0e}; not timing it")


# Pause before every timed run. Thread pools spin after their work: OpenBLAS's threads for
# ~0.1 s after a GEMM, torch's OpenMP threads too. Without the pause, whichever library runs next
# shares the cores with the other's spinning threads: measured here (2 threads, AVX-512 kernels),
# torch.nn.LSTM at (32, 64, 256, 1) took 37.5 ms right after minis2s and 16.3 ms on its own.
SETTLE_S = 0.3
# But after the pause a pool's threads are asleep, and waking them can cost milliseconds on this
# VM (a Numba/OpenMP parallel region: 1.5 µs back to back, 5.8 ms after 50 ms idle; torch at
# (32, 16, 128, 2) measured 4.7 ms one run and 13.9 ms another). So each timed run follows one
# untimed run of the same implementation: it is timed warm, as in a training loop.
WARM_RUNS = 1


def time_interleaved(runners: dict, repeats: int, settle: float = SETTLE_S, warm_runs: int = WARM_RUNS):
    """runners: name -> () -> (forward s, backward s, _). Round-robin, starting one later each
    repeat; before each timed run ``settle`` seconds of idle cores, then ``warm_runs`` untimed
    runs of the same implementation. Returns name -> {"forward", "backward", "total"} medians in
    seconds."""
    names = list(runners)
    for name in names:  # warm-up: Numba compilation, torch's first-call setup, page faults
        runners[name]()
        settle_thread_choices(itertools.repeat(runners[name]))  # and minis2s's thread choices' first trials
    samples = {name: [] for name in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            time.sleep(settle)
            for _ in range(warm_runs):
                runners[name]()
            f, b, _ = runners[name]()
            samples[name].append((f, b))
    return {name: {"forward": statistics.median(f for f, _ in s), "backward": statistics.median(b for _, b in s),
                   "total": statistics.median(f + b for f, b in s)} for name, s in samples.items()}


@contextlib.contextmanager
def kernel_version(version):
    """``with kernel_version(v):`` the fast path runs kernels/lstm_cpu.py's (and gru_cpu.py's,
    where it has it) version v as its default; restored afterwards. None: the default stays."""
    from minis2s.kernels import gru_cpu, lstm_cpu

    if version is None:
        yield
        return
    old = lstm_cpu.DEFAULT_VERSION, gru_cpu.DEFAULT_VERSION
    lstm_cpu.DEFAULT_VERSION = version
    gru_cpu.DEFAULT_VERSION = version if version in gru_cpu.VERSIONS else old[1]
    try:
        yield
    finally:
        lstm_cpu.DEFAULT_VERSION, gru_cpu.DEFAULT_VERSION = old


def version_runners(problem, log=print):
    """One runner per kernels/lstm_cpu.py version: the problem's nn.LSTM on the fast path with
    that version as the default; each version is validated against the reference first."""
    from minis2s.kernels import lstm_cpu

    runners = {}
    for v in lstm_cpu.VERSIONS:
        with kernel_version(v):
            err = validate(problem)["fast"]
        check_validation(f"kernels/lstm_cpu.py version {v}", err, MAX_ERROR["fast"])
        log(f"validated version {v}: {err:.1e}")

        def run(v=v):
            with kernel_version(v):
                return minis2s_step(problem, fast=True)

        runners[f"fast v{v}"] = run
    return runners


def run_benchmark(configs=CONFIGS, repeats=7, versions=False, busy=False, log=print):
    """Validate, then time every configuration (with one core kept busy by another process while
    timing, if ``busy``). Returns the JSON-ready result dict."""
    import torch

    torch.set_num_threads(TORCH_THREADS)
    load_before = os.getloadavg()
    rows = []
    for T, B, H, layers in configs:
        problem = make_problem(T, B, H, layers)
        errors = validate(problem)
        for name, err in errors.items():
            check_validation(f"{name} at (T,B,H,L)=({T},{B},{H},{layers})", err, MAX_ERROR[name])
        log(f"validated (T,B,H,L)=({T},{B},{H},{layers}): fast vs reference {errors['fast']:.1e}, "
            f"torch vs reference {errors['torch']:.1e}")
        runners = {
            "reference": lambda p=problem: minis2s_step(p, fast=False),
            "fast": lambda p=problem: minis2s_step(p, fast=True),
            "torch": lambda p=problem: torch_step(p),
            "torch without oneDNN": lambda p=problem: torch_step(p, onednn=False),
            "sgemm": sgemm_step,
            "GEMMs alone, 1 thread": lambda p=problem: gemms_alone(p, 1),
            f"GEMMs alone, {THREADS} threads": lambda p=problem: gemms_alone(p, THREADS),
            "pointwise alone": lambda p=problem: pointwise_alone(p),
            f"GEMMs alone, batch in {THREADS} parts at once": lambda p=problem: gemms_in_parallel(p),
            f"fast, {THREADS} threads": lambda p=problem: with_blas_threads(THREADS, minis2s_step, p, fast=True),
        }
        if versions:
            runners.update(version_runners(problem, log))
        with busy_core(busy):
            times = time_interleaved(runners, repeats)
        fwd_flops, bwd_flops = lstm_flops(T, B, H, H, layers)
        sgemm = 2 * 2048**3 / times["sgemm"]["total"] / 1e9
        fast, torch_s = times["fast"]["total"], times["torch"]["total"]
        flops = fwd_flops + bwd_flops
        rows.append({
            "T": T, "B": B, "H": H, "I": H, "layers": layers, "dtype": "float32", "busy": busy,
            "ms": {name: {k: 1e3 * v for k, v in t.items()} for name, t in times.items() if name != "sgemm"},
            "fast_over_torch": fast / torch_s,
            "fast_over_torch_without_onednn": fast / times["torch without oneDNN"]["total"],
            # the least fast/torch any time loop around these GEMM calls can reach: the fast
            # path's GEMMs alone, on the better of 1 and all threads, everything else free
            "gemm_floor_over_torch": min(t["total"] for k, t in times.items() if k.startswith("GEMMs alone")) / torch_s,
            # ... and with the pointwise work too, split perfectly over the cores, either with
            # each GEMM on all threads, or with every GEMM and kernel on one thread and the work
            # spread over the cores (layers or directions in flight at once: a wavefront): the
            # least any schedule of these GEMMs and kernels on this machine's cores can reach
            "schedule_floor_over_torch": min(
                times[f"GEMMs alone, {THREADS} threads"]["total"] + times["pointwise alone"]["total"] / THREADS,
                (times["GEMMs alone, 1 thread"]["total"] + times["pointwise alone"]["total"]) / THREADS) / torch_s,
            # a schedule that splits the batch instead: its own (smaller) GEMMs measured at once
            "batch_split_floor_over_torch": (times[f"GEMMs alone, batch in {THREADS} parts at once"]["total"]
                                             + times["pointwise alone"]["total"] / THREADS) / torch_s,
            # the least fast/torch any implementation built on this sgemm can reach: every FLOP of
            # the LSTM's GEMMs at the measured peak, the pointwise work free
            "fast_over_torch_at_sgemm_peak": (fwd_flops + bwd_flops) / (sgemm * 1e9) / torch_s,
            "torch_gflops": (fwd_flops + bwd_flops) / torch_s / 1e9,
            "fast_gflops": (fwd_flops + bwd_flops) / fast / 1e9,
            "fast_forward_gflops": fwd_flops / times["fast"]["forward"] / 1e9,
            "sgemm_gflops": sgemm,
            "fast_share_of_sgemm": (fwd_flops + bwd_flops) / fast / 1e9 / sgemm,
            "share_of_sgemm": {name: flops / t["total"] / 1e9 / sgemm for name, t in times.items() if name != "sgemm"},
            "validation_rel_error": errors,
        })
        log(format_row(rows[-1]))
    from minis2s.kernels import lstm_cpu

    from minis2s import threads

    return {
        "benchmark": "lstm_cpu", "repeats": repeats, "statistic": "median", "settle_s": SETTLE_S,
        "warm_runs": WARM_RUNS, "max_settle_calls": MAX_SETTLE_CALLS, "retrial_calls": retrial_calls(),
        "thread_choices": threads.choices(),  # minis2s's measured BLAS thread choices at the end
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "clock": "cpu" if clock is CLOCKS["cpu"] else "wall", "threads": THREADS, "torch_threads": TORCH_THREADS,
        "busy": busy,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"), "blas_kernel": blas_kernel(),
        "versions": {"numpy": np.__version__, "torch": torch.__version__, "numba": _numba_version(),
                     "fast_kernel_version": lstm_cpu.DEFAULT_VERSION},
        "rows": rows,
    }


HEADER = (f"{'T,B,H,L':>14} {'ref ms':>8} {'fast ms':>8} {'torch ms':>9} {'fast/torch':>10} {'bound':>6} "
          f"{'fast GF/s':>9} {'torch GF/s':>10} {'sgemm GF/s':>10} {'% peak':>6} {'torch %':>7}   "
          f"fwd ms (ref/fast/torch)   [version: ms, /torch, % peak]")


def format_row(row):
    ms = row["ms"]
    shape = f"{row['T']},{row['B']},{row['H']},{row['layers']}"
    s = (f"{shape:>14} {ms['reference']['total']:8.1f} {ms['fast']['total']:8.1f} {ms['torch']['total']:9.1f} "
         f"{row['fast_over_torch']:10.2f} {row['fast_over_torch_at_sgemm_peak']:6.2f} {row['fast_gflops']:9.1f} "
         f"{row['torch_gflops']:10.1f} {row['sgemm_gflops']:10.1f} "
         f"{100 * row['fast_share_of_sgemm']:5.0f}% {100 * row['share_of_sgemm']['torch']:6.0f}%   "
         f"{ms['reference']['forward']:.1f}/{ms['fast']['forward']:.1f}/{ms['torch']['forward']:.1f}")
    torch_ms = ms["torch"]["total"]
    extra = [f"{k} {v['total']:.1f} ms {v['total'] / torch_ms:.2f}"
             + ("" if k.startswith("pointwise") else f" {100 * row['share_of_sgemm'][k]:.0f}%")
             for k, v in ms.items()
             if k.startswith(("fast v", "fast, ", "GEMMs alone", "pointwise")) or k == "torch without oneDNN"]
    extra.append(f"GEMM floor/torch {row['gemm_floor_over_torch']:.2f}, "
                 f"with the pointwise work {row['schedule_floor_over_torch']:.2f}, "
                 f"batch split {row['batch_split_floor_over_torch']:.2f}")
    return s + ("   [" + ", ".join(extra) + "]" if extra else "")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _numba_version():
    try:
        import numba
        return numba.__version__
    except ImportError:
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--configs", nargs="*", help="T,B,H,L ... (default: the issue's three)")
    ap.add_argument("--versions", action="store_true", help="also time every kernels/lstm_cpu.py version")
    ap.add_argument("--busy", action="store_true", help="keep one core busy with another process while timing")
    ap.add_argument("--torch-threads", type=int, help="torch's threads (default: as many as NumPy's BLAS)")
    ap.add_argument("--clock", choices=list(CLOCKS), default="wall",
                    help="cpu: process CPU time, only meaningful with OPENBLAS_NUM_THREADS=1")
    ap.add_argument("--out", type=Path, help="JSON file (default: a new one in benchmarks/results/)")
    ap.add_argument("--keep-freed-memory", action="store_true", help=KEEP_FREED_MEMORY_HELP)
    args = ap.parse_args(argv)
    kept = keep_freed_memory(args.keep_freed_memory)
    if args.clock == "cpu" and THREADS != 1:
        sys.exit("--clock cpu needs one thread: OPENBLAS_NUM_THREADS=1 python benchmarks/lstm_cpu.py --clock cpu")
    global clock, TORCH_THREADS
    clock = CLOCKS[args.clock]
    TORCH_THREADS = args.torch_threads or THREADS
    if not dispatch.available():
        sys.exit("the fast path needs Numba: pip install numba")
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs] if args.configs else CONFIGS
    print(f"NumPy's BLAS: OpenBLAS, {blas_kernel()} kernels, {THREADS} thread(s); torch {TORCH_THREADS}"
          + (", one core kept busy by another process while timing" if args.busy else ""))
    print(HEADER)
    result = run_benchmark(configs, args.repeats, args.versions, args.busy, log=print)
    result["keep_freed_memory"] = kept
    busy = ("_busy" if args.busy else "") + ("_kept" if kept == "set" else "")
    out = args.out or RESULTS / f"lstm_cpu_{time.strftime('%Y%m%d-%H%M%S')}_{THREADS}t_{args.clock}{busy}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
