"""Whole commands under minis2s's BLAS thread modes, against one thread: does the default ever
make minis2s slower than ``OPENBLAS_NUM_THREADS=1``?

Each command runs as its own process under each setting, interleaved (the order rotates every
round, so all see the same load), ``--rounds`` times:

    default      minis2s's "auto": small GEMMs on one thread, large ones on the count measured faster
    size         MINIS2S_BLAS_THREADS=size: small GEMMs on one thread, large ones on every thread
    all threads  MINIS2S_BLAS_THREADS=<cores>: every op on every thread, whatever its size
    one thread   OPENBLAS_NUM_THREADS=1 (minis2s leaves the count alone)

Prints the median wall time of each and the median over rounds of each round's ratio to one
thread's; ``--busy`` keeps one core busy with another process (benchmarks/machine.py) for the
whole measurement. Writes JSON to benchmarks/results/. A measurement: no pass or fail.

    python benchmarks/thread_modes.py [--rounds 3] [--busy] [--only demo|g2p]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

COMMANDS = {  # name -> minis2s arguments (a fresh --out is added to each run)
    "demo": ["demo", "reverse", "--max-steps", "600", "--quiet"],  # step GEMM B·H·4H = 4.2 M MACs
    "g2p": ["g2p", "train", "--max-steps", "40", "--train-limit", "20000", "--quiet"],  # 75.5 M
}
SETTINGS = {
    "default": {},
    "size": {"MINIS2S_BLAS_THREADS": "size"},
    "all threads": {"MINIS2S_BLAS_THREADS": str(os.cpu_count() or 1)},  # every op on every core, whatever its size
    "one thread": {"OPENBLAS_NUM_THREADS": "1"},
}


def run_once(args: list[str], extra_env: dict) -> float:
    from minis2s.threads import ENV_VARS, MODE_VAR

    env = {k: v for k, v in os.environ.items() if k not in (*ENV_VARS, MODE_VAR)}
    env.update(extra_env)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "minis2s", *args, "--out", os.path.join(tmp, "run")], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--busy", action="store_true", help="keep one core busy with another process while timing")
    p.add_argument("--only", choices=sorted(COMMANDS), default=None, help="one command only")
    args = p.parse_args(argv)
    from benchmarks.machine import busy_core

    commands = {args.only: COMMANDS[args.only]} if args.only else COMMANDS
    results = {}
    load0 = os.getloadavg()[0]
    with busy_core(args.busy):
        for name, cmd in commands.items():
            run_once(cmd, SETTINGS["one thread"])  # warm-up: Numba's cache, the page cache
            times = {s: [] for s in SETTINGS}
            for r in range(args.rounds):
                order = list(SETTINGS)[r % len(SETTINGS):] + list(SETTINGS)[: r % len(SETTINGS)]
                for s in order:
                    times[s].append(run_once(cmd, SETTINGS[s]))
            ratios = {s: float(np.median(np.array(times[s]) / np.array(times["one thread"]))) for s in SETTINGS}
            results[name] = {"seconds": times, "ratio_to_one_thread": ratios}
            print(f"{' '.join(cmd)}" + ("  (one core kept busy)" if args.busy else ""))
            for s in SETTINGS:
                print(f"  {s:<12} {np.median(times[s]):7.1f} s wall (median of {args.rounds})   "
                      f"x one thread {ratios[s]:.2f}")
    load1 = os.getloadavg()[0]
    print(f"load {load0:.1f} -> {load1:.1f}")
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    tag = "_busy" if args.busy else ""
    out = os.path.join(ROOT, "benchmarks", "results", f"thread_modes_{time.strftime('%Y%m%d-%H%M%S')}{tag}.json")
    with open(out, "w") as f:
        json.dump({"args": vars(args), "commands": commands, "settings": SETTINGS, "results": results,
                   "loadavg": [load0, load1]}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
