"""Where one BLAS thread beats all of them: float32 GEMMs of a recurrence step, (B, H) · (H, G).

For each shape, 1 thread and all threads are timed interleaved (threadpoolctl), the median of
``--repeats`` rounds of ``--calls`` back-to-back calls (as a recurrence makes them). Prints a
table (multiply-adds, µs per call each way, their ratio) and the smallest size at which all
threads won; minis2s/threads.py's SMALL_GEMM_MACS is chosen from it. Writes JSON to
benchmarks/results/. Never passes or fails: a measurement.

    python benchmarks/blas_threads.py [--repeats 7] [--calls 64]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SHAPES = [(B, H, 4 * H) for B in (16, 32, 64, 128, 256) for H in (64, 128, 256, 384, 512)]


def time_calls(a, b, out, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        np.matmul(a, b, out=out)
    return (time.perf_counter() - t0) / calls


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--calls", type=int, default=64)
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_info, threadpool_limits

    from benchmarks.machine import blas_kernel

    most = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    rng = np.random.default_rng(0)
    rows = []
    for B, H, G in SHAPES:
        a = rng.standard_normal((B, H), dtype=np.float32)
        b = np.ascontiguousarray(rng.standard_normal((G, H), dtype=np.float32).T)
        out = np.empty((B, G), np.float32)
        times = {1: [], most: []}
        for _ in range(args.repeats):
            for n in times:  # interleaved: both see the same machine
                with threadpool_limits(n, user_api="blas"):
                    time_calls(a, b, out, 4)  # wake the pool
                    times[n].append(time_calls(a, b, out, args.calls))
        one, many = (float(np.median(times[n])) for n in (1, most))
        rows.append({"B": B, "H": H, "G": G, "macs": B * H * G, "us_1": one * 1e6, f"us_{most}": many * 1e6,
                     "ratio": many / one})
    rows.sort(key=lambda r: r["macs"])
    print(f"float32 GEMM (B, H) x (H, G), 1 vs {most} BLAS threads, OpenBLAS {blas_kernel()} kernels, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'B':>5}{'H':>6}{'G':>6}{'MACs':>12}{'1 thread µs':>13}{f'{most} threads µs':>15}{'ratio':>8}")
    for r in rows:
        print(f"{r['B']:>5}{r['H']:>6}{r['G']:>6}{r['macs']:>12,}{r['us_1']:>13.1f}{r[f'us_{most}']:>15.1f}"
              f"{r['ratio']:>8.2f}")
    wins = [r["macs"] for r in rows if r["ratio"] < 0.9]
    print(f"all threads at least 10% faster from {min(wins):,} MACs" if wins else "one thread was never slower")
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    path = os.path.join(ROOT, "benchmarks", "results", f"blas_threads_{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump({"rows": rows, "threads": most, "machine": platform.platform(), "blas_kernel": blas_kernel(),
                   "loadavg": os.getloadavg(), "args": vars(args)}, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
