"""G2P training throughput: minis2s against the seed's model written in PyTorch.

Same data (the first CMUdict train batches, bucketed, batch 128), same architecture (the seed's
LSTM encoder-decoder; hidden/layers/embedding from the flags), same loss (masked
cross-entropy), Adam, gradient clipping 5; the two run interleaved in one process, torch with
``--threads`` threads. Reports words/s (training pairs per second) of each, median over rounds,
and a bound: the words/s of an implementation whose every GEMM FLOP ran at NumPy's measured sgemm
peak and whose other work cost nothing (no implementation on NumPy's BLAS can beat it).

    python benchmarks/g2p_train_speed.py [--hidden 384 --layers 2 --embedding 128]
                                         [--teacher-forcing 1.0] [--steps 20] [--rounds 3]

Prints a table and writes JSON to benchmarks/results/. No pass/fail on time.
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


def minis2s_runner(args, task, batches):
    from minis2s import fastpath, manual_seed
    from minis2s.nn import CrossEntropyLoss
    from minis2s.optim import Adam, clip_grad_norm_
    from minis2s.training.trainer import loss_and_grad

    fastpath.set_enabled(not args.reference)
    manual_seed(0)
    model = task.build_model()
    opt, loss_fn, gen = Adam(model.parameters()), CrossEntropyLoss(ignore_index=0), np.random.default_rng(0)

    def step(b):
        model.zero_grad()
        loss = loss_and_grad(model, b, loss_fn, args.teacher_forcing, gen)
        clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return loss

    return step


def torch_runner(args, task, batches):
    import torch

    from tests.torch_seed import make_seed_model

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = task.model_config
    model = make_seed_model(len(task.src_vocab), len(task.trg_vocab), cfg.hidden, cfg.embedding, cfg.layers,
                            dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0)

    def step(b):
        src, trg = torch.from_numpy(b.src), torch.from_numpy(b.trg)
        opt.zero_grad()
        out = model(src, trg, args.teacher_forcing)  # the seed's loop: random.random() coin flips
        V = out.shape[-1]
        loss = loss_fn(out[1:].reshape(-1, V), trg[1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return float(loss)

    return step


def training_flops(batches, cfg, src_vocab, trg_vocab):
    """GEMM FLOPs of training on ``batches`` (padding included, as computed): per LSTM layer
    forward 2·T·B·4H·(I+H), the output projection 2·T·B·H·V, backward twice the forward; the
    encoder runs T_src steps, the decoder T_trg - 1. Embedding lookups, the loss, Adam: not GEMMs."""
    H, E, L, V = cfg.hidden, cfg.embedding, cfg.layers, len(trg_vocab)
    total = 0
    for b in batches:
        (T_src, B), T_dec = b.src.shape, b.trg.shape[0] - 1
        lstm = sum(2 * B * 4 * H * ((E if layer == 0 else H) + H) for layer in range(L))
        total += 3 * (T_src * lstm + T_dec * (lstm + 2 * B * H * V))
    return total


def sgemm_gflops(n=2048, repeats=5):
    """This machine's float32 n³ matmul rate through NumPy: best of ``repeats`` after one warm-up
    (benchmarks/lstm_cpu.py's sgemm_step)."""
    from benchmarks.lstm_cpu import sgemm_step

    sgemm_step(n)
    return 2 * n**3 / min(sgemm_step(n)[0] for _ in range(repeats)) / 1e9


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embedding", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--teacher-forcing", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=20, help="training steps per round and implementation")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--reference", action="store_true", help="minis2s on the NumPy reference, not the fast path")
    args = p.parse_args(argv)

    from benchmarks.machine import blas_kernel
    from minis2s.data.cmudict import load_split
    from minis2s.g2p import G2PTask
    from minis2s.models.config import ModelConfig

    words = dict(list(load_split("train").items())[: args.batch_size * args.steps * 2])
    cfg = ModelConfig(hidden=args.hidden, layers=args.layers, embedding=args.embedding, dropout=0.0)
    task = G2PTask(cfg, train_words=words, dev_words={})
    batches = task.train_batches(np.random.default_rng(0), args.batch_size)[: args.steps]
    n_words = sum(b.size for b in batches)
    runners = {"minis2s": minis2s_runner(args, task, batches), "torch (seed model)": torch_runner(args, task, batches)}
    for step in runners.values():  # warm-up: JIT compilation, allocator
        step(batches[0])
    times = {k: [] for k in runners}
    for _ in range(args.rounds):
        for name, step in runners.items():  # interleaved, so both see the same machine load
            t0 = time.perf_counter()
            for b in batches:
                step(b)
            times[name].append(time.perf_counter() - t0)
    rates = {k: n_words / float(np.median(v)) for k, v in times.items()}
    time.sleep(0.3)  # let the last runner's threads go quiet before the sgemm is timed
    flops, peak = training_flops(batches, task.model_config, task.src_vocab, task.trg_vocab), sgemm_gflops()
    bound = n_words / (flops / (peak * 1e9))  # words/s with every GEMM FLOP at the sgemm peak
    print(f"G2P training, H={args.hidden} L={args.layers} E={args.embedding} batch={args.batch_size} "
          f"teacher forcing {args.teacher_forcing}, {args.steps} steps x {args.rounds} rounds, load {os.getloadavg()[0]:.1f}, "
          f"OpenBLAS {blas_kernel()} kernels")
    print(f"{'implementation':<22}{'words/s':>10}{'x torch':>10}")
    for k, r in rates.items():
        print(f"{k:<22}{r:>10.0f}{r / rates['torch (seed model)']:>10.2f}")
    print(f"{'bound':<22}{bound:>10.0f}{bound / rates['torch (seed model)']:>10.2f}   "
          f"(every GEMM FLOP at NumPy's sgemm peak, {peak:.0f} GFLOP/s; nothing else costs time; "
          f"{flops / n_words / 1e9:.3f} GFLOP per word)")
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    out = os.path.join(ROOT, "benchmarks", "results", f"g2p_train_speed_{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(out, "w") as f:
        json.dump({"args": vars(args), "words_per_s": rates, "seconds": times, "machine": platform.platform(),
                   "gemm_flops": flops, "sgemm_gflops": peak, "words_per_s_at_sgemm_peak": bound,
                   "loadavg": os.getloadavg(), "blas_kernel": blas_kernel()}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
