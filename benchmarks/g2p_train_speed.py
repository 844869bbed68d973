"""G2P training throughput: minis2s against the same model written in PyTorch (tests/torch_seed.py).

Same data (the first CMUdict train batches, bucketed, batch 128), same architecture (the
reversed-source LSTM encoder-decoder; hidden/layers/embedding from the flags), same loss (masked
cross-entropy), Adam, gradient clipping 5; the two run interleaved in one process, torch with
``--threads`` threads. Reports words/s (training pairs per second) of each, median over rounds,
the share of NumPy's measured sgemm peak its GEMM FLOPs ran at ("% peak"), and a bound: the
words/s of an implementation whose every GEMM FLOP ran at that peak and whose other work cost
nothing (no implementation on NumPy's BLAS can beat it).

    python benchmarks/g2p_train_speed.py [--hidden 384 --layers 2 --embedding 128]
                                         [--teacher-forcing 1.0] [--steps 20] [--rounds 3]
                                         [--versions] [--busy] [--keep-freed-memory]

The row "minis2s, rows to T" is the same training step with the batch's ``trg_lengths`` left
out: the decoder runs every row to the batch's last step, as the torch model does, instead of
stopping each row at its length (its step GEMMs then skip the finished rows). The GEMM FLOPs,
% peak and the bound count the full (T, B) work: the padded steps the rows skip included.

``--versions``: one minis2s row per kernels/lstm_cpu.py version (the fast path's default set to
it). ``--busy``: another process spins on one core while the rounds and the sgemm are timed.
``--keep-freed-memory``: glibc's malloc told to keep freed memory
(minis2s/allocator.py); process-wide, so torch's rows run with it too.
Before timing, the fast path's first training step (loss and every gradient, each version) is
validated against the NumPy reference path on the same model.

Prints a table and writes JSON to benchmarks/results/. No pass/fail on time.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def minis2s_runner(args, task, batches, version=None, stop_rows=True):
    """One training step of minis2s (fast path unless --reference; kernel ``version``, None for
    the default) -> step(batch). ``stop_rows=False``: the batch without its ``trg_lengths``, so
    the decoder runs every row to the batch's end (its step GEMMs skip no finished rows)."""
    from benchmarks.lstm_cpu import kernel_version
    from minis2s import dispatch, manual_seed
    from minis2s.nn import CrossEntropyLoss
    from minis2s.optim import Adam, clip_grad_norm_
    from minis2s.training.trainer import loss_and_grad

    manual_seed(0)
    model = task.build_model()
    opt, loss_fn, gen = Adam(model.parameters()), CrossEntropyLoss(ignore_index=0), np.random.default_rng(0)

    def step(b):
        if not stop_rows:
            b = dataclasses.replace(b, trg_lengths=None)
        dispatch.set_enabled(not args.reference)
        try:
            with kernel_version(version):
                model.zero_grad()
                loss = loss_and_grad(model, b, loss_fn, args.teacher_forcing, gen)
        finally:
            dispatch.set_enabled(None)
        clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return loss

    return step


MAX_ERROR = 1e-5  # float32 fast path against the reference path: loss and gradients, relative


def validate(args, task, batch, versions):
    """Relative error of the loss and every gradient of one training step, fast path (each
    kernel version in ``versions``; None: the default) against the reference path on the same
    model and coin flips; exits before timing if one exceeds MAX_ERROR."""
    from benchmarks.lstm_cpu import kernel_version
    from minis2s import dispatch, manual_seed
    from minis2s.gradcheck import rel_error
    from minis2s.nn import CrossEntropyLoss
    from minis2s.training.trainer import loss_and_grad

    manual_seed(0)
    model = task.build_model()

    def one_step(fast, version):
        dispatch.set_enabled(fast)
        try:
            with kernel_version(version):
                model.zero_grad()
                loss = loss_and_grad(model, batch, CrossEntropyLoss(ignore_index=0), args.teacher_forcing,
                                     np.random.default_rng(1))
        finally:
            dispatch.set_enabled(None)
        return np.array([loss]), [p.grad.copy() for p in model.parameters()]

    loss_r, grads_r = one_step(False, None)
    for version in versions:
        loss, grads = one_step(True, version)
        err = max([rel_error(loss, loss_r)] + [rel_error(g, r) for g, r in zip(grads, grads_r)])
        name = "default" if version is None else f"version {version}"
        if not err <= MAX_ERROR:
            raise SystemExit(f"fast path ({name}): relative error {err:.2e} against the reference exceeds "
                             f"{MAX_ERROR:.0e}; not timing it")
        print(f"validated the fast path ({name}) against the reference: {err:.1e}")


def torch_runner(args, task, batches, onednn=True):
    """The seed model in PyTorch; ``onednn=False``: its LSTMs on torch's own ATen loop instead of
    oneDNN's RNN primitive (torch's default for float32 on the CPU)."""
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
        with torch.backends.mkldnn.flags(enabled=onednn):
            opt.zero_grad()
            out = model(src, trg, args.teacher_forcing)  # the skeleton's loop: random.random() coin flips
            V = out.shape[-1]
            loss = loss_fn(out[1:].reshape(-1, V), trg[1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        return float(loss)

    return step


def gemms_runner(task, threads: int):
    """The GEMMs alone of one minis2s training step on ``threads`` BLAS threads -> step(batch):
    every LSTM layer's (benchmarks/lstm_cpu.py's ``layer_gemms``: encoder over T_src steps,
    decoder over T_trg - 1, the first layer of each on the embeddings) and the output
    projection's three, with the batch's shapes and nothing between them. Its words/s is the
    GEMM floor: what no kernel, time loop or optimizer work can beat while it builds on NumPy's
    BLAS with these GEMMs."""
    from threadpoolctl import threadpool_limits

    from benchmarks.lstm_cpu import layer_gemm_arrays, layer_gemms

    cfg, V = task.model_config, len(task.trg_vocab)
    H, E, L = cfg.hidden, cfg.embedding, cfg.layers
    arrays, rng = {}, np.random.default_rng(1)

    def get(key, make):
        if key not in arrays:
            arrays[key] = make()
        return arrays[key]

    def step(b):
        (T_src, B), T_dec = b.src.shape, b.trg.shape[0] - 1
        w = get(("proj",), lambda: rng.standard_normal((V, H)).astype(np.float32))
        with threadpool_limits(threads, user_api="blas"):
            for T in (T_src, T_dec):
                for layer in range(L):
                    I = E if layer == 0 else H
                    layer_gemms(get((T, B, I), lambda T=T, I=I: layer_gemm_arrays(rng, T, B, I, H)))
            h, dy = get(("out", T_dec, B), lambda: (rng.standard_normal((T_dec * B, H)).astype(np.float32),
                                                      rng.standard_normal((T_dec * B, V)).astype(np.float32)))
            h @ w.T  # logits
            dy.T @ h  # dW
            dy @ w  # dh
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
    from benchmarks.machine import KEEP_FREED_MEMORY_HELP, keep_freed_memory

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
    p.add_argument("--versions", action="store_true", help="one minis2s row per kernels/lstm_cpu.py version")
    p.add_argument("--busy", action="store_true", help="keep one core busy with another process while timing")
    p.add_argument("--keep-freed-memory", action="store_true", help=KEEP_FREED_MEMORY_HELP)
    args = p.parse_args(argv)
    keep_freed_memory(args.keep_freed_memory)

    from minis2s.kernels import lstm_cpu

    from benchmarks.machine import blas_kernel, busy_core, settle_thread_choices
    from minis2s.data.cmudict import load_split
    from minis2s.g2p import G2PTask
    from minis2s.models.config import ModelConfig

    words = dict(list(load_split("train").items())[: args.batch_size * args.steps * 2])
    cfg = ModelConfig(hidden=args.hidden, layers=args.layers, embedding=args.embedding, dropout=0.0)
    task = G2PTask(cfg, train_words=words, dev_words={})
    batches = task.train_batches(np.random.default_rng(0), args.batch_size)[: args.steps]
    n_words = sum(b.size for b in batches)
    versions = list(lstm_cpu.VERSIONS) if args.versions and not args.reference else []
    if not args.reference:
        validate(args, task, batches[0], [None] + versions)
    runners = {"minis2s": minis2s_runner(args, task, batches)}
    runners.update({f"minis2s v{v}": minis2s_runner(args, task, batches, v) for v in versions})
    runners["minis2s, rows to T"] = minis2s_runner(args, task, batches, stop_rows=False)
    runners["torch (seed model)"] = torch_runner(args, task, batches)
    runners["torch without oneDNN"] = torch_runner(args, task, batches, onednn=False)
    for n in sorted({1, args.threads}):
        runners[f"GEMMs alone, {n} thr"] = gemms_runner(task, n)
    from minis2s import threads

    for step in runners.values():  # warm-up: JIT compilation, allocator
        step(batches[0])
        settle_thread_choices(functools.partial(step, b) for b in batches[1:])  # and the thread choices' trials
    times = {k: [] for k in runners}
    flops = training_flops(batches, task.model_config, task.src_vocab, task.trg_vocab)
    with busy_core(args.busy):
        for r in range(args.rounds):
            for k in range(len(runners)):  # interleaved, so all see the same machine load; one later each round
                name, step = list(runners.items())[(r + k) % len(runners)]
                t0 = time.perf_counter()
                for b in batches:
                    step(b)
                times[name].append(time.perf_counter() - t0)
        time.sleep(0.3)  # let the last runner's threads go quiet before the sgemm is timed
        peak = sgemm_gflops()
    rates = {k: n_words / float(np.median(v)) for k, v in times.items()}
    bound = n_words / (flops / (peak * 1e9))  # words/s with every GEMM FLOP at the sgemm peak
    torch_rate = rates["torch (seed model)"]
    print(f"G2P training, H={args.hidden} L={args.layers} E={args.embedding} batch={args.batch_size} "
          f"teacher forcing {args.teacher_forcing}, {args.steps} steps x {args.rounds} rounds, load {os.getloadavg()[0]:.1f}, "
          f"OpenBLAS {blas_kernel()} kernels, fast path version {lstm_cpu.DEFAULT_VERSION}"
          + (", one core kept busy by another process" if args.busy else "")
          + (", freed memory kept (minis2s/allocator.py)" if args.keep_freed_memory else ""))
    print(f"{'implementation':<22}{'words/s':>10}{'x torch':>10}{'% peak':>8}")
    for k, r in rates.items():  # % peak: the GEMM FLOPs per second over the sgemm peak
        print(f"{k:<22}{r:>10.0f}{r / torch_rate:>10.2f}{100 * r / bound:>7.0f}%")
    floor = max(r for k, r in rates.items() if k.startswith("GEMMs alone"))
    print(f"{'GEMM floor':<22}{floor:>10.0f}{floor / torch_rate:>10.2f}{100 * floor / bound:>7.0f}%   "
          f"(the better GEMMs-alone row: minis2s's GEMMs with nothing between them)")
    print(f"{'bound':<22}{bound:>10.0f}{bound / torch_rate:>10.2f}{100:>7.0f}%   "
          f"(every GEMM FLOP at NumPy's sgemm peak, {peak:.0f} GFLOP/s; nothing else costs time; "
          f"{flops / n_words / 1e9:.3f} GFLOP per word)")
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    out = os.path.join(ROOT, "benchmarks", "results", f"g2p_train_speed_{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(out, "w") as f:
        json.dump({"args": vars(args), "words_per_s": rates, "seconds": times, "machine": platform.platform(),
                   "gemm_flops": flops, "sgemm_gflops": peak, "words_per_s_at_sgemm_peak": bound,
                   "gemm_floor_words_per_s": floor,
                   "share_of_sgemm": {k: r / bound for k, r in rates.items()},
                   "fast_kernel_version": lstm_cpu.DEFAULT_VERSION, "thread_choices": threads.choices(),
                   "loadavg": os.getloadavg(), "blas_kernel": blas_kernel()}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
