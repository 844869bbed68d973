"""LSTM forward and forward+backward, every implementation: validate first, then time.

    python benchmarks/lstm_step.py --quick        # one small grid; a 2-core CPU in under 2 minutes
    python benchmarks/lstm_step.py                # H 256, 512, 1024 x B 1, 8, 64; T 32; 1 layer
    python benchmarks/lstm_step.py --H 512 --B 1 8 64 --T 32 --L 1 --repeats 20 --dtype float32
    python benchmarks/lstm_step.py --quick --out lstm.json --gpu-estimates   # + JSON, + H100 estimates

Implementations (each one that is available here):
    numpy_ref      minis2s.ops.lstm_forward/backward: the float64-exact reference, run in --dtype
    cpu_fast       the driver with kernels/lstm_cpu.py's default steps (Numba fused pointwise + BLAS GEMMs)
    torch_cpu      torch.nn.LSTM on the CPU
    cupy_cuda_c    kernels/lstm_cuda_c.py: cuBLAS GEMMs + the fused CUDA C pointwise kernels (version 2)
    numba_cuda     the same driver with the Numba CUDA pointwise kernels on CuPy arrays
    persistent     the persistent CUDA C kernels: forward and backward one launch per sequence each,
                   W_hh in shared memory (a direction whose state does not fit runs per step; the
                   note says which ran)
    torch_cuda     torch.nn.LSTM on the GPU (cuDNN; TF32 switched off, so it is fp32 like the rest)

For every (T, B, H, L) each implementation is first run on the same inputs as the float64
reference (T = min(T, 4), the benchmark's B, H, L) and every output and gradient compared
(float32 within 1e-4, float64 within 1e-9, relative to the tensor's largest entry); a mismatch
stops the benchmark with the tensor, the error and the tolerance. Then it is timed: a whole
sequence (T steps) and one step (the same call with T = 1), forward and forward+backward, after
warm-up, the median of --repeats runs; time.perf_counter on the CPU, CUDA events on the GPU.
Forward means a training forward (the cache for backward is kept), for torch too.

It prints one table: a row per configuration and implementation that is available here; each
implementation that is not is named once above the table with the reason. GFLOP/s counts the GEMM
FLOPs only (DeepBench's basis; 2 FLOPs per multiply-add): forward = 8·T·B·H·(I + H) per layer
(input projection + recurrent GEMM, 4H gates), forward+backward = 3 x forward. "fwd+bwd time ÷
torch" is the sequence forward+backward time / torch's on the same kind of device (torch_cpu for
the CPU rows, torch_cuda for the GPU rows): lower is better, below 1 is faster than torch.

--gpu-estimates adds an on-paper H100 estimate for the GPU implementations (bytes and FLOPs against
published bandwidth and FLOP rate; the formula is printed with it; estimates, never measurements),
the kernels' register and shared-memory figures from nvcc --resource-usage, and the persistent
kernel's launch plan on an H100.

--out FILE writes the results as JSON (without it, no file is written). Nothing passes or fails
on time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import socket
import statistics
import sys
import time
import traceback
from functools import partial
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
if "--threads" in sys.argv[:-1]:  # BLAS reads these when numpy is first imported: set them first
    for _var in THREAD_VARS:
        os.environ[_var] = sys.argv[sys.argv.index("--threads") + 1]

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minis2s.kernels import cuda_host, lstm_cuda_c
from minis2s.kernels.kernel_set import kernel_set_steps

from benchmarks.machine import blas_kernel
from minis2s import ops
from minis2s.backend import get_backend, to_numpy
from minis2s.gradcheck import rel_error

TOLERANCE = {"float32": 1e-4, "float64": 1e-9}  # tests/conftest.py's F32_TOL / F64_TOL
VALIDATION_T = 4

# ---- published H100 SXM5 figures (NVIDIA H100 datasheet / Hopper architecture whitepaper) ------
H100 = {
    "name": "H100 SXM5 (published figures)",
    "hbm_bytes_per_s": 3.35e12,  # HBM3
    "fp32_flops": 66.9e12,  # non-tensor FP32
    "fp64_flops": 33.5e12,
    "sms": 132,
    "smem_bytes_per_block": 227 * 1024,  # opt-in maximum per block (228 KiB per SM)
    "smem_bytes_per_clock_per_sm": 128,  # 32 banks x 4 bytes
    "boost_clock_hz": 1.98e9,
    "registers_per_sm": 65536,
}
H100["smem_bytes_per_s"] = H100["sms"] * H100["smem_bytes_per_clock_per_sm"] * H100["boost_clock_hz"]
# Assumed, not published: the cost of one kernel launched from Python (CuPy / Numba dispatch plus
# the launch itself) and of one cooperative-groups grid barrier. They dominate at small B.
LAUNCH_S = 5e-6
GRID_SYNC_S = 2e-6


# ---- the implementations -----------------------------------------------------------------------
class Functional:
    """An implementation given as lstm_forward/lstm_backward (minis2s.ops's signatures)."""

    def __init__(self, name, device, forward, backward, xp=np, torch_ref=None):
        self.name, self.device, self._fwd, self._bwd, self.xp = name, device, forward, backward, xp
        self.torch_ref = torch_ref

    def load(self, layers, x, h0, c0, dtype):
        xp = self.xp
        self.layers = [[xp.asarray(w.astype(dtype)) for w in layer] for layer in layers]
        self.x, self.h0, self.c0 = (xp.asarray(a.astype(dtype)) for a in (x, h0, c0))

    def to_device(self, a, dtype):
        return self.xp.asarray(a.astype(dtype))

    def forward(self):
        inp, self.caches = self.x, []
        for layer, w in enumerate(self.layers):
            inp, _, cache = self._fwd(inp, self.h0[layer], self.c0[layer], *w)
            self.caches.append(cache)
        return inp

    def backward(self, dout):
        grads, d = {}, dout
        for layer in reversed(range(len(self.layers))):
            d, _, _, dw_ih, dw_hh, db_ih, db_hh = self._bwd(d, None, None, self.caches[layer])
            grads.update({f"dw_ih_l{layer}": dw_ih, f"dw_hh_l{layer}": dw_hh, f"db_ih_l{layer}": db_ih,
                          f"db_hh_l{layer}": db_hh})
        grads["dx"] = d
        return grads


class Torch:
    """torch.nn.LSTM (time first, L layers) with the same weights."""

    def __init__(self, name, device):
        import torch

        self.torch, self.name, self.device = torch, name, device
        self.torch_ref = None

    def load(self, layers, x, h0, c0, dtype):
        torch = self.torch
        tdt = getattr(torch, dtype)
        H, I = layers[0][1].shape[1], layers[0][0].shape[1]
        dev = "cuda" if self.device == "cuda" else "cpu"
        self.lstm = torch.nn.LSTM(I, H, num_layers=len(layers)).to(dev, tdt)
        with torch.no_grad():
            for layer, w in enumerate(layers):
                for name, a in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), w):
                    getattr(self.lstm, f"{name}_l{layer}").copy_(torch.from_numpy(a.astype(dtype)))
        self.x = torch.tensor(x.astype(dtype), device=dev, requires_grad=True)
        self.h0 = torch.tensor(h0.astype(dtype), device=dev)
        self.c0 = torch.tensor(c0.astype(dtype), device=dev)
        self.tdt, self.dev = tdt, dev

    def to_device(self, a, dtype):
        return self.torch.tensor(a.astype(dtype), device=self.dev)

    def forward(self):
        self.out, _ = self.lstm(self.x, (self.h0, self.c0))
        return self.out

    def backward(self, dout):
        self.lstm.zero_grad(set_to_none=True)
        self.x.grad = None
        self.out.backward(dout)
        grads = {"dx": self.x.grad}
        for layer in range(self.lstm.num_layers):
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                p = getattr(self.lstm, f"{name.replace('w_', 'weight_').replace('b_', 'bias_')}_l{layer}")
                grads[f"d{name}_l{layer}"] = p.grad
        return grads


def _host(a):
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return to_numpy(a)


def discover():
    """[(name, implementation or None, why unavailable or None)] in the table's order."""
    found = []
    found.append(("numpy_ref", Functional("numpy_ref", "cpu", ops.lstm_forward, ops.lstm_backward), None))
    try:
        from minis2s.kernels import lstm_cpu

        steps = lstm_cpu.VERSIONS[lstm_cpu.DEFAULT_VERSION]
        found.append(("cpu_fast", Functional("cpu_fast", "cpu", partial(ops.lstm_forward, steps=steps),
                                             ops.lstm_backward), None))
    except Exception as e:  # noqa: BLE001 - absent or broken: the row says why, the rest runs
        found.append(("cpu_fast", None, f"minis2s.kernels.lstm_cpu not importable: {type(e).__name__}: {e}"))
    try:
        import torch

        found.append(("torch_cpu", Torch("torch_cpu", "cpu"), None))
    except ImportError as e:
        found.append(("torch_cpu", None, f"torch not installed: {e}"))

    gpu_reason = None
    try:
        cp = get_backend("cuda")
    except RuntimeError as e:
        cp, gpu_reason = None, str(e)
    if cp is not None:
        from minis2s.kernels import lstm_numba_cuda

        def on_gpu(name, kernels):  # the driver with this kernel set's steps, on CuPy arrays
            steps = kernel_set_steps(kernels, name)
            return Functional(name, "cuda", partial(ops.lstm_forward, steps=steps), ops.lstm_backward, xp=cp)

        found.append(("cupy_cuda_c", on_gpu("cupy_cuda_c", lstm_cuda_c.CudaCKernels(version=2)), None))
        try:
            found.append(("numba_cuda", on_gpu("numba_cuda", lstm_numba_cuda.NumbaKernels()), None))
        except RuntimeError as e:
            found.append(("numba_cuda", None, str(e)))
        pers = lstm_cuda_c.CudaCKernels(version=2, persistent=True)
        impl = on_gpu("persistent", pers)
        impl.kernels = pers  # its last_path goes into the row's note
        found.append(("persistent", impl, None))
    else:
        for name in ("cupy_cuda_c", "numba_cuda", "persistent"):
            found.append((name, None, gpu_reason))
    try:
        import torch

        if torch.cuda.is_available():
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            found.append(("torch_cuda", Torch("torch_cuda", "cuda"), None))
        else:
            found.append(("torch_cuda", None, "torch has no CUDA device"))
    except ImportError as e:
        found.append(("torch_cuda", None, f"torch not installed: {e}"))
    return found


GPU_IMPLS = ("cupy_cuda_c", "numba_cuda", "persistent", "torch_cuda")


# ---- data, validation, timing -------------------------------------------------------------------
def make_problem(T, B, I, H, L, seed=0):
    """float64 weights U(-1/√H, 1/√H) as torch, inputs N(0, 1), an upstream gradient."""
    rng = np.random.default_rng(seed)
    s = 1.0 / math.sqrt(H)
    layers = []
    for layer in range(L):
        i = I if layer == 0 else H
        layers.append([rng.uniform(-s, s, shape) for shape in [(4 * H, i), (4 * H, H), (4 * H,), (4 * H,)]])
    x = rng.standard_normal((T, B, I))
    h0, c0 = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    dout = rng.standard_normal((T, B, H))
    return layers, x, h0, c0, dout


class ValidationError(SystemExit):
    pass


def validate(impl, B, I, H, L, dtype):
    """Run impl and the float64 reference on the same (exactly representable) inputs; compare
    the output and every gradient. Returns the worst relative error; raises ValidationError."""
    layers, x, h0, c0, dout = make_problem(VALIDATION_T, B, I, H, L, seed=1)
    cast = [[w.astype(dtype).astype(np.float64) for w in layer] for layer in layers]
    x, h0, c0, dout = (a.astype(dtype).astype(np.float64) for a in (x, h0, c0, dout))
    ref = Functional("ref", "cpu", ops.lstm_forward, ops.lstm_backward)
    ref.load(cast, x, h0, c0, np.float64)
    ref_out = ref.forward()
    ref_grads = ref.backward(dout)
    impl.load(cast, x, h0, c0, dtype)
    out = impl.forward()
    grads = impl.backward(impl.to_device(dout, dtype))
    worst = 0.0
    for name, ours, theirs in [("out", out, ref_out)] + [(k, grads[k], ref_grads[k]) for k in ref_grads]:
        ours = _host(ours)
        if ours.shape != theirs.shape:
            raise ValidationError(f"VALIDATION FAILED: {impl.name} {name} has shape {ours.shape}, "
                                  f"reference {theirs.shape}")
        if not np.all(np.isfinite(ours)):
            raise ValidationError(f"VALIDATION FAILED: {impl.name} {name} has non-finite values")
        err = rel_error(ours, theirs)
        worst = max(worst, err)
        if err > TOLERANCE[dtype]:
            raise ValidationError(f"VALIDATION FAILED: {impl.name} (B={B}, H={H}, L={L}, {dtype}) {name}: "
                                  f"relative error {err:.3e} > {TOLERANCE[dtype]:.0e}")
    return worst


class Timer:
    """Median wall time of fn(), with CUDA events on the GPU."""

    def __init__(self, device, impl):
        self.device, self.impl = device, impl

    def __call__(self, fn, warmup, repeats):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            times.append(self._once(fn))
        return statistics.median(times)

    def _once(self, fn):
        if self.device == "cpu":
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        if isinstance(self.impl, Torch):
            torch = self.impl.torch
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        import cupy

        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) / 1e3


def time_impl(impl, T, B, I, H, L, dtype, warmup, repeats):
    """{seq_fwd, seq_fwdbwd, step_fwd, step_fwdbwd}: seconds (median)."""
    timer = Timer(impl.device, impl)
    result = {}
    for label, steps in (("seq", T), ("step", 1)):
        layers, x, h0, c0, dout = make_problem(steps, B, I, H, L, seed=2)
        impl.load(layers, x, h0, c0, dtype)
        d = impl.to_device(dout, dtype)

        def fwd_bwd(d=d):
            impl.forward()
            impl.backward(d)

        result[f"{label}_fwd"] = timer(impl.forward, warmup, repeats)
        result[f"{label}_fwdbwd"] = timer(fwd_bwd, warmup, repeats)
    return result


def gemm_flops(T, B, I, H, L):
    """GEMM FLOPs of one forward: 8·T·B·H·(I_l + H) summed over layers (2 per multiply-add)."""
    return sum(8 * T * B * H * ((I if layer == 0 else H) + H) for layer in range(L))


# ---- on-paper H100 estimates --------------------------------------------------------------------
ESTIMATE_FORMULA = f"""\
On-paper H100 estimate (NOT a measurement). Per kernel: t = max(bytes / BW_HBM, FLOPs / F_fp32),
summed over the kernels a call launches, plus {LAUNCH_S * 1e6:.0f} µs per kernel launch (assumed Python dispatch +
launch) and, for the persistent kernel, {GRID_SYNC_S * 1e6:.0f} µs per grid barrier (assumed). s = bytes per element.
  per-step path (cupy_cuda_c, numba_cuda, torch_cuda), per layer, forward:
    input GEMM   8·T·B·I·H FLOPs,  s·(T·B·I + 4H·I + 4T·B·H) bytes                    1 launch
    each step    recurrent GEMM 8·B·H² FLOPs, s·(4H² + 5B·H) bytes (W_hh re-read every step)  1 launch
                 pointwise      s·16·B·H bytes (xg, hg, c in; h, c, tanh c, 4 gates out)     1 launch
  backward adds per step: pointwise s·13·B·H bytes + GEMM 8·B·H² FLOPs, s·(4H² + 5B·H) bytes (2 launches),
    then dW_ih, dW_hh, dx: 8·T·B·H·(2I + H) FLOPs (3 launches)
  persistent, each direction that fits on chip (else as the per-step path): W_hh read once, s·4H² bytes;
    per step the on-chip dot products read s·4·B·H² bytes of shared memory at
    {H100['smem_bytes_per_s'] / 1e12:.1f} TB/s (132 SMs x 128 B/clock x 1.98 GHz) + one grid barrier;
    one launch per direction; the backward's weight GEMMs as above.
H100 SXM5: HBM3 {H100['hbm_bytes_per_s'] / 1e12:.2f} TB/s, FP32 {H100['fp32_flops'] / 1e12:.1f} TFLOP/s (published)."""


def _k(nbytes, flops, fp):
    return max(nbytes / H100["hbm_bytes_per_s"], flops / fp)


def estimate_h100(impl, T, B, I, H, L, itemsize):
    """(forward seconds, forward+backward seconds) on paper, per the formula above."""
    s, fp = itemsize, H100["fp32_flops"] if itemsize == 4 else H100["fp64_flops"]
    fits = {d: persistent_plan_h100(B, H, itemsize, d == "backward")["fits"] for d in ("forward", "backward")}
    recurrent_gemm = _k(s * (4 * H * H + 5 * B * H), 8 * B * H * H, fp)
    on_chip = s * 4 * H * H / H100["hbm_bytes_per_s"] + T * (s * 4 * B * H * H / H100["smem_bytes_per_s"]
                                                            + GRID_SYNC_S) + LAUNCH_S
    fwd = bwd = 0.0
    for layer in range(L):
        i = I if layer == 0 else H
        fwd += _k(s * (T * B * i + 4 * H * i + 4 * T * B * H), 8 * T * B * i * H, fp) + LAUNCH_S
        if impl == "persistent" and fits["forward"]:
            fwd += on_chip
        else:
            fwd += T * (recurrent_gemm + _k(s * 16 * B * H, 0, fp) + 2 * LAUNCH_S)
        if impl == "persistent" and fits["backward"]:
            bwd += on_chip
        else:
            bwd += T * (_k(s * 13 * B * H, 0, fp) + recurrent_gemm + 2 * LAUNCH_S)
        bwd += _k(s * (2 * T * B * 4 * H + T * B * (i + H) + 4 * H * (i + H)), 8 * T * B * H * (2 * i + H), fp)
        bwd += 3 * LAUNCH_S
    return fwd, fwd + bwd


# ---- the persistent kernel's fit on chip --------------------------------------------------------
def persistent_plan_h100(B, H, itemsize, backward):
    """kernels/lstm_cuda_c.py's launch plan, for an H100 instead of the GPU at hand."""
    HS, blocks = lstm_cuda_c.persistent_tiling(H, H100["sms"])
    smem = lstm_cuda_c.persistent_smem_elems(B, H, HS, lstm_cuda_c.PERSISTENT_THREADS, backward) * itemsize
    return {"HS": HS, "blocks": blocks, "smem_bytes": smem, "fits": smem <= H100["smem_bytes_per_block"]}


def persistent_fit(B_list, itemsize=4):
    """Launch plan on an H100 for each H and B: HS, blocks, shared memory per block, fits?"""
    rows = []
    for H in (128, 256, 512, 768, 1024, 1280, 1536, 2048):
        for B in B_list:
            fwd, bwd = persistent_plan_h100(B, H, itemsize, False), persistent_plan_h100(B, H, itemsize, True)
            rows.append({"H": H, "B": B, "HS": fwd["HS"], "blocks": fwd["blocks"],
                         "weights_bytes_per_block": 4 * fwd["HS"] * H * itemsize,
                         "smem_bytes": fwd["smem_bytes"], "fits": fwd["fits"],
                         "smem_bytes_backward": bwd["smem_bytes"], "fits_backward": bwd["fits"]})
    return rows


def resource_figures(tmpdir):
    """nvcc --resource-usage for every .cu file (+ the Numba kernels' PTX through ptxas)."""
    if cuda_host.nvcc_path() is None:
        return {"error": "nvcc not found"}
    figures = {}
    for cu in cuda_host.cu_files():
        try:
            figures.update(cuda_host.resource_usage(cu))
        except RuntimeError as e:
            figures[cu.name] = {"error": str(e)}
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        try:
            from minis2s.kernels import lstm_numba_cuda
            from numba import cuda, float32

            for label, k in zip(("forward", "backward"), lstm_numba_cuda.make_kernels(np.float32)):
                ptx, _ = cuda.compile_ptx(k.py_func, (float32[:, ::1],) * 7, cc=(9, 0))
                (u,) = cuda_host.ptx_resource_usage(ptx, tmpdir).values()
                figures[f"numba_{label}_f32"] = u
        except Exception as e:  # noqa: BLE001 - e.g. no NVVM: the CUDA C figures still stand
            figures["numba"] = {"error": f"{type(e).__name__}: {e}"}
    return figures


# ---- output: one table, streamed a configuration at a time --------------------------------------
# (title, unit / direction, width) per column after T B H L impl; times lower is better.
COLUMNS = [
    ("seq fwd", "(ms)", 9), ("seq fwd+bwd", "(ms)", 12), ("step fwd", "(µs)", 9),
    ("step fwd+bwd", "(µs)", 13), ("fwd+bwd GFLOP/s", "(higher=better)", 16),
    ("fwd+bwd time ÷ torch", "(lower=better)", 21), ("validation", "max rel err", 12),
]
LEAD = f"{'T':>3} {'B':>3} {'H':>5} {'L':>2}  {'impl':<12}"


def print_table_header():
    print(LEAD + "".join(f"{title:>{w + 1}}" for title, _, w in COLUMNS) + "  note")
    print(" " * len(LEAD) + "".join(f"{unit:>{w + 1}}" for _, unit, w in COLUMNS))
    print("-" * (len(LEAD) + sum(w + 1 for *_, w in COLUMNS) + 6))


def print_row(r):
    c = r["config"]
    lead = f"{c['T']:>3} {c['B']:>3} {c['H']:>5} {c['L']:>2}  {r['impl']:<12}"
    if r["status"] != "measured":
        print(f"{lead} {r['status']}: {r['note']}", flush=True)
        return
    t = r["times"]
    ratio = "-" if r["ratio_to_torch"] is None else f"{r['ratio_to_torch']:.2f}"
    cells = [f"{t['seq_fwd'] * 1e3:.3f}", f"{t['seq_fwdbwd'] * 1e3:.3f}", f"{t['step_fwd'] * 1e6:.1f}",
             f"{t['step_fwdbwd'] * 1e6:.1f}", f"{r['gflops_fwdbwd']:.1f}", ratio,
             f"{r['validation_max_rel_error']:.1e}"]
    line = lead + "".join(f"{cell:>{w + 1}}" for cell, (_, _, w) in zip(cells, COLUMNS))
    print(line + (f"  {r['note']}" if r["note"] else ""), flush=True)


def print_legend(args):
    print(f"""
seq: the whole sequence, T steps; step: the same call with T = 1. Forward is a training forward (the
cache for backward kept). Times: median of {args.repeats} runs after {args.warmup} warm-up(s); lower is better.
fwd+bwd GFLOP/s: GEMM FLOPs only (DeepBench's basis), 3 x 8·T·B·H·(I+H)·L / seq fwd+bwd time.
fwd+bwd time ÷ torch: seq fwd+bwd time / torch's on the same device (torch_cpu for the CPU rows,
torch_cuda for the GPU rows); below 1 is faster than torch, "-" where that torch did not run.
validation: before it was timed, every output and gradient was compared with the float64 reference
(T = {VALIDATION_T}, tolerance {TOLERANCE[args.dtype]:.0e} relative to each tensor's largest entry).""")


def unavailable_lines(impls):
    """One "unavailable: names: reason" line per distinct reason, in the table's order."""
    by_reason = {}
    for name, impl, why in impls:
        if impl is None:
            by_reason.setdefault(why, []).append(name)
    return [f"unavailable: {', '.join(names)}: {why}" for why, names in by_reason.items()]


def print_estimates(est):
    print("\n" + ESTIMATE_FORMULA)
    head = (f"{'T':>3} {'B':>3} {'H':>5} {'L':>2}  {'impl':<12} {'EST seq fwd ms':>14} {'EST seq f+b ms':>14} "
            f"{'EST µs/step fwd':>15}")
    print(head)
    print("-" * len(head))
    for e in est:
        c = e["config"]
        print(f"{c['T']:>3} {c['B']:>3} {c['H']:>5} {c['L']:>2}  {e['impl']:<12} {e['fwd_s'] * 1e3:>14.3f} "
              f"{e['fwdbwd_s'] * 1e3:>14.3f} {e['fwd_s'] / c['T'] * 1e6:>15.1f}")


def print_resources(figures, fit):
    print("\nnvcc -arch=sm_90 --resource-usage (per thread; the persistent kernel's weights are dynamic "
          "shared memory, sized at launch):")
    for name, u in figures.items():
        if "error" in u:
            print(f"  {name}: {u['error']}")
        else:
            print(f"  {name:<34} {u['registers']:>3} registers, {u['spill_store_bytes']} B spill stores, "
                  f"{u['static_smem_bytes']} B static smem")
    print(f"\nPersistent kernel launch plan on an H100 (float32, {lstm_cuda_c.PERSISTENT_THREADS} threads/block, "
          f"<= 1 block per SM, limit {H100['smem_bytes_per_block']} B shared memory per block):")
    print(f"  {'H':>5} {'B':>3} {'HS':>3} {'blocks':>6} {'W slice B':>10} {'fwd smem B':>10} {'fits':>4} "
          f"{'bwd smem B':>10} {'fits':>4}")
    for r in fit:
        print(f"  {r['H']:>5} {r['B']:>3} {r['HS']:>3} {r['blocks']:>6} {r['weights_bytes_per_block']:>10} "
              f"{r['smem_bytes']:>10} {'yes' if r['fits'] else 'NO':>4} {r['smem_bytes_backward']:>10} "
              f"{'yes' if r['fits_backward'] else 'NO':>4}")
    for B in sorted({r["B"] for r in fit}):
        f = [r["H"] for r in fit if r["B"] == B and r["fits"]]
        b = [r["H"] for r in fit if r["B"] == B and r["fits_backward"]]
        print(f"  B={B}: on chip up to H={max(f) if f else 'none'} (forward), H={max(b) if b else 'none'} "
              "(backward), of those tried")


def versions():
    v = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "numba", "cupy"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - not installed or broken: no version to report
            v[mod] = None
    nvcc = cuda_host.nvcc_path()
    if nvcc:
        import subprocess

        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=False).stdout
        v["nvcc"] = out.strip().splitlines()[-1] if out.strip() else None
    return v




def run_config(impls, config, dtype, warmup, repeats):
    """Validate, then time, every available implementation on one (T, B, H, L): the table's rows."""
    T, B, H, L, I = (config[k] for k in ("T", "B", "H", "L", "I"))
    flops = gemm_flops(T, B, I, H, L)
    block = []
    for name, impl in impls:
        row = {"config": config, "impl": name, "note": ""}
        try:
            row["validation_max_rel_error"] = validate(impl, B, I, H, L, dtype)
            row["times"] = time_impl(impl, T, B, I, H, L, dtype, warmup, repeats)
        except ValidationError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. the persistent kernel's state does not fit
            row.update(status="failed", note=f"{type(e).__name__}: {e}", ratio_to_torch=None)
            if os.environ.get("MINIS2S_BENCH_DEBUG"):
                traceback.print_exc()
            block.append(row)
            continue
        row["status"] = "measured"
        row["gflops_fwdbwd"] = 3 * flops / row["times"]["seq_fwdbwd"] / 1e9
        if hasattr(impl, "kernels"):  # the persistent kernels: which path each direction took
            row["paths"] = dict(impl.kernels.last_path)
            row["note"] = f"ran {row['paths']}"
        block.append(row)
    for row in block:  # ratio to torch on the same kind of device
        if row["status"] != "measured":
            continue
        ref_name = "torch_cuda" if row["impl"] in GPU_IMPLS else "torch_cpu"
        ref = next((r for r in block if r["impl"] == ref_name and r["status"] == "measured"), None)
        row["ratio_to_torch"] = row["times"]["seq_fwdbwd"] / ref["times"]["seq_fwdbwd"] if ref else None
    return block


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, nargs="+", default=[32], help="sequence lengths")
    p.add_argument("--B", type=int, nargs="+", default=[1, 8, 64], help="batch sizes")
    p.add_argument("--H", type=int, nargs="+", default=[256, 512, 1024], help="hidden sizes")
    p.add_argument("--L", type=int, nargs="+", default=[1], help="layers")
    p.add_argument("--I", type=int, default=None, help="input size (default: H)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--impl", nargs="+", default=None, help="only these implementations")
    p.add_argument("--quick", action="store_true", help="T 16, B 1 8, H 256, 2 warm-ups, 5 repeats")
    p.add_argument("--out", "--json", dest="out", type=Path, default=None,
                   help="write the results as JSON to this file (default: no file)")
    p.add_argument("--gpu-estimates", action="store_true",
                   help="also print the on-paper H100 estimates for the GPU implementations, the kernels' "
                        "register counts (nvcc --resource-usage) and the persistent kernel's launch plan")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for BLAS, Numba and torch (default: their own); on a shared, "
                        "oversubscribed machine 1 avoids threads spinning at barriers")
    args = p.parse_args(argv)
    if args.threads is not None:
        for var in THREAD_VARS:  # (already set before numpy's import when given on the command line)
            os.environ.setdefault(var, str(args.threads))
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    if args.quick:
        args.T, args.B, args.H, args.L, args.warmup, args.repeats = [16], [1, 8], [256], [1], 2, 5

    started = time.time()
    impls = discover()
    if args.impl:
        impls = [t for t in impls if t[0] in args.impl]
    print(f"minis2s LSTM benchmark, {args.dtype}, {datetime.datetime.now().isoformat(timespec='seconds')}, "
          f"host {socket.gethostname()}, {os.cpu_count()} CPUs, threads {args.threads or 'default'}, "
          f"OpenBLAS {blas_kernel()} kernels")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None and load > (os.cpu_count() or 1) and not args.threads:
        print(f"WARNING: load average {load:.1f} on {os.cpu_count()} CPUs: multi-threaded BLAS/torch spin at "
              "barriers on a busy machine and CPU timings come out erratic; --threads 1 is steadier")
    available = [(n, i) for n, i, _ in impls if i is not None]
    print("available: " + (", ".join(n for n, _ in available) or "none"))
    for line in unavailable_lines(impls):
        print(line)
    print()

    print_table_header()
    rows, configs = [], []
    for T in args.T:
        for L in args.L:
            for H in args.H:
                for B in args.B:
                    configs.append({"T": T, "B": B, "H": H, "L": L, "I": args.I or H})
                    block = run_config(available, configs[-1], args.dtype, args.warmup, args.repeats)
                    for row in block:
                        print_row(row)
                    rows.extend(block)
    print_legend(args)

    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "load_average_at_start": load,
        "blas_kernel": blas_kernel(),
        "versions": versions(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "flops_basis": "GEMM FLOPs: forward 8·T·B·H·(I+H) per layer, forward+backward 3x",
        "timer": "median of repeats; time.perf_counter on CPU, CUDA events on GPU",
        "unavailable": {n: why for n, i, why in impls if i is None},
        "rows": rows,
    }
    if args.gpu_estimates:
        itemsize = np.dtype(args.dtype).itemsize
        est = []
        for c in configs:
            for name in GPU_IMPLS:
                f, fb = estimate_h100(name, c["T"], c["B"], c["I"], c["H"], c["L"], itemsize)
                est.append({"config": c, "impl": name, "fwd_s": f, "fwdbwd_s": fb, "basis": "on-paper estimate"})
        print_estimates(est)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            figures = resource_figures(tmp)
        fit = persistent_fit(sorted(set(args.B) | {1, 8}))
        print_resources(figures, fit)
        result.update(estimates_h100=est, estimate_formula=ESTIMATE_FORMULA, h100_published=H100,
                      assumed={"launch_s": LAUNCH_S, "grid_sync_s": GRID_SYNC_S},
                      resource_usage_sm90=figures, persistent_fit_h100=fit)
    result["wall_s"] = time.time() - started
    print(f"\nwall time {result['wall_s']:.1f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=float))
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
