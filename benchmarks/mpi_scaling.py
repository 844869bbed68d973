"""Data-parallel G2P training: measured on this machine, then modelled for K machines.

Measured (``--measure``): ``g2p train --max-steps 40 --train-limit 20000`` as one process with 2
BLAS threads, as ``mpiexec -n 2`` with 1 BLAS thread per rank, and as one process with 1 thread,
interleaved A B C A B C ... (``--pairs`` rounds, so that all see the same background load); words/s of each run =
the training pairs of its 40 steps / its training seconds (RUN's last checkpoint's state.json:
start-up, data loading and the final checkpoint are not counted). The median is reported.

Modelled (always; from the measurement, or ``--params`` and ``--rate``): K machines, one rank
each, each as fast as the measured single process (R words/s), global batch B:
    bytes reduced per step  = 4 P                     (P parameters, float32 gradients)
    ring allreduce          = 2 (K-1)/K · 4P / bandwidth + 2 (K-1) · latency
    compute per step        = (B / K) / R             (R assumed independent of the local batch)
    efficiency              = compute / (compute + allreduce)   (minis2s does not overlap them)
    B below which efficiency < 80%:  B_80 = 4 K R · allreduce(K)
Latencies are assumptions, not measurements: 50 µs per message at 10 Gb/s (TCP), 5 µs at
100 Gb/s (RDMA). Prints tables and writes JSON to benchmarks/results/mpi_scaling.json.

    python benchmarks/mpi_scaling.py --measure [--pairs 3]
    python benchmarks/mpi_scaling.py --params 3500000 --rate 900      # the model alone
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "mpi_scaling.json")
NETWORKS = {"10 Gb/s": (10e9 / 8, 50e-6), "100 Gb/s": (100e9 / 8, 5e-6)}  # bytes/s, latency per message (assumed)
KS = (2, 4, 8, 16, 32, 64)
LOCAL_BATCH = 128  # G2P's batch per machine in the weak-scaling table


def train_once(launch: list[str], threads: int, steps: int, limit: int) -> tuple[float, int]:
    """(words/s of the training steps, parameter count) of one ``g2p train`` run."""
    out = tempfile.mkdtemp(prefix="mpi-scaling-")
    try:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), PYTHONPATH=ROOT)
        cmd = [*launch, sys.executable, "-m", "minis2s", "g2p", "train", "--out", f"{out}/run", "--max-steps",
               str(steps), "--train-limit", str(limit), "--quiet"]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        params = int(re.search(r"([\d,]+) parameters", p.stderr).group(1).replace(",", ""))
        with open(f"{out}/run/checkpoints/step-{steps:08d}/state.json") as f:
            state = json.load(f)
        state = state.get("state", state)
        return state["pairs_seen"] / state["train_seconds"], params
    finally:
        shutil.rmtree(out, ignore_errors=True)


def measure(pairs: int, steps: int, limit: int) -> dict:
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    one, two, single = [], [], []
    for i in range(pairs):
        r1, params = train_once([], 2, steps, limit)
        r2, _ = train_once([mpiexec, "-n", "2"], 1, steps, limit)
        r3, _ = train_once([], 1, steps, limit)
        one.append(r1)
        two.append(r2)
        single.append(r3)
        print(f"round {i + 1}: 1 process x 2 threads {r1:7.1f} words/s   2 ranks x 1 thread {r2:7.1f} words/s   "
              f"1 process x 1 thread {r3:7.1f} words/s", flush=True)
    return {"steps": steps, "train_limit": limit, "params": params, "one_process_2_threads": one,
            "two_ranks_1_thread": two, "one_process_1_thread": single, "median_one": statistics.median(one),
            "median_two": statistics.median(two), "median_single": statistics.median(single),
            "median_ratio": statistics.median(b / a for a, b in zip(one, two)),
            "median_ratio_1_thread": statistics.median(b / c for b, c in zip(two, single))}


def allreduce_seconds(k: int, params: int, bandwidth: float, latency: float) -> float:
    return 2 * (k - 1) / k * 4 * params / bandwidth + 2 * (k - 1) * latency


def model(params: int, rate: float) -> list[dict]:
    rows = []
    for k in KS:
        row = {"K": k, "global_batch": LOCAL_BATCH * k, "compute_s": LOCAL_BATCH / rate}
        for name, (bw, lat) in NETWORKS.items():
            t = allreduce_seconds(k, params, bw, lat)
            row[name] = {"allreduce_s": t, "efficiency": row["compute_s"] / (row["compute_s"] + t),
                         "batch_80": 4 * k * rate * t}
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true", help="measure 1 process against 2 ranks on this machine")
    ap.add_argument("--pairs", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--params", type=int, default=None, help="parameter count (default: the measurement's)")
    ap.add_argument("--rate", type=float, default=None, help="single-process words/s (default: the measurement's)")
    args = ap.parse_args()
    result = {}
    if args.measure:
        result["measured"] = measure(args.pairs, args.steps, args.train_limit)
    elif os.path.isfile(RESULTS):
        with open(RESULTS) as f:
            result["measured"] = json.load(f).get("measured")
    m = result.get("measured") or {}
    # R: the faster single-process set-up (on a loaded machine 2 BLAS threads can be the slower)
    params = args.params or m.get("params")
    rate = args.rate or (max(m["median_one"], m.get("median_single", 0.0)) if m else None)
    if params is None or rate is None:
        ap.error("no measurement to model from: give --measure, or --params and --rate")
    if m:
        print(f"\nmeasured (median of {len(m['one_process_2_threads'])} interleaved rounds, {m['steps']} steps, "
              f"train_limit {m['train_limit']}): 1 process x 2 BLAS threads {m['median_one']:.1f} words/s, "
              f"2 ranks x 1 thread {m['median_two']:.1f} words/s (ratio {m['median_ratio']:.3f}), "
              f"1 process x 1 thread {m.get('median_single', float('nan')):.1f} words/s")
    rows = model(params, rate)
    print(f"\nmodel: P = {params:,} parameters ({4 * params / 1e6:.1f} MB reduced per step), R = {rate:.0f} words/s "
          f"per machine, local batch {LOCAL_BATCH}; latency 50 us (10 Gb/s) and 5 us (100 Gb/s) assumed")
    print(f"{'K':>3} {'batch':>6} {'compute ms':>10} | {'10G ring ms':>11} {'eff':>5} {'B_80':>7} | "
          f"{'100G ring ms':>12} {'eff':>5} {'B_80':>6}")
    for r in rows:
        a, b = r["10 Gb/s"], r["100 Gb/s"]
        print(f"{r['K']:>3} {r['global_batch']:>6} {1e3 * r['compute_s']:>10.1f} | {1e3 * a['allreduce_s']:>11.2f} "
              f"{a['efficiency']:>5.2f} {a['batch_80']:>7.0f} | {1e3 * b['allreduce_s']:>12.2f} {b['efficiency']:>5.2f} "
              f"{b['batch_80']:>6.0f}")
    print("eff: efficiency at a local batch of 128 (global batch 128 K); B_80: the global batch below which the "
          "efficiency falls under 80%")
    result.update(params=params, rate=rate, local_batch=LOCAL_BATCH, model=rows)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
