"""The ``minis2s`` command (also ``python -m minis2s``).

    minis2s demo reverse|sort                 train on a synthetic task, report held-out accuracy
    minis2s g2p train --out DIR [--arch seq2seq|attention] [--resume]    train a G2P model on CMUdict
    minis2s g2p eval [--model DIR [--model DIR...]] [--split dev|test] [--beam K [--alpha A]]
    minis2s g2p export --model DIR --out DIR [--dtype float32|float16|int8]
    minis2s g2p average DIR... --out DIR      (checkpoint averaging, e.g. RUN/epochs/*)
    minis2s g2p predict WORD... | --input FILE [--beam K] [--nbest N] [--model DIR] [--plot OUT.png]

Bad input prints one line ``minis2s: error: ...`` and exits with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from minis2s.checkpoint import CheckpointError
from minis2s.g2p import DEFAULT_MODEL, PRETRAINED_ENSEMBLES, PRETRAINED_MODELS
from minis2s.train import TrainConfig, TrainingDiverged, train

EXPECTED_ERRORS = (ValueError, TypeError, KeyError, CheckpointError, FileNotFoundError, TrainingDiverged,
                   RuntimeError)


def _add_train_args(p, defaults: TrainConfig):
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--clip", type=float, default=defaults.clip, help="max global gradient norm")
    p.add_argument("--teacher-forcing", type=float, default=defaults.teacher_forcing)
    p.add_argument("--teacher-forcing-end", type=float, default=None,
                   help="move the teacher-forcing ratio linearly to this by the last epoch")
    p.add_argument("--patience", type=int, default=defaults.patience, help="early stopping, in epochs")
    p.add_argument("--lr-schedule", choices=["plateau", "cosine"], default=defaults.lr_schedule,
                   help="plateau: halve the lr when dev stalls; cosine: anneal it to --min-lr by the last epoch")
    p.add_argument("--lr-threshold", type=float, default=defaults.lr_threshold,
                   help="(plateau) halve the learning rate when dev improves by less than this fraction")
    p.add_argument("--lr-patience", type=int, default=defaults.lr_patience,
                   help="(plateau) epochs of too little improvement before the lr is halved")
    p.add_argument("--min-lr", type=float, default=defaults.min_lr)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (a checkpoint is saved)")
    p.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    p.add_argument("--keep-epochs", type=int, default=defaults.keep_epochs,
                   help="keep the model of each of the last N epochs in RUN/epochs/ (for g2p average)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_config(args, **overrides) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, clip=args.clip,
                       teacher_forcing=args.teacher_forcing, teacher_forcing_end=args.teacher_forcing_end,
                       patience=args.patience, lr_schedule=args.lr_schedule, lr_threshold=args.lr_threshold,
                       lr_patience=args.lr_patience, min_lr=args.min_lr, seed=args.seed, max_steps=args.max_steps,
                       checkpoint_every=args.checkpoint_every, keep_epochs=args.keep_epochs, progress=not args.quiet,
                       **overrides)


MODEL_HELP = (f"a model folder, or a shipped model by name: {', '.join([*PRETRAINED_MODELS, *PRETRAINED_ENSEMBLES])} "
              f"(default: {DEFAULT_MODEL}); give --model more than once to decode with an ensemble of them")


def build_parser():
    parser = argparse.ArgumentParser(prog="minis2s", description="sequence-to-sequence from scratch in NumPy")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train on a synthetic task (reverse or sort digits)")
    demo.add_argument("task", choices=["reverse", "sort"])
    demo.add_argument("--out", default=None, help="run folder (default: runs/demo-TASK)")
    demo.add_argument("--hidden", type=int, default=128)
    _add_train_args(demo, TrainConfig(epochs=15, batch_size=64, patience=3))

    g2p = sub.add_parser("g2p", help="grapheme-to-phoneme on CMUdict").add_subparsers(dest="action", required=True)
    tr = g2p.add_parser("train", help="train a model (the seed's architecture, or with attention)")
    tr.add_argument("--out", required=True, help="run folder (checkpoints, metrics, curves, best/)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --resume: change a saved training setting (e.g. epochs=60, lr_schedule=cosine); "
                         "the change is written to the run's config.json. A new lr is the cosine cycle's peak; "
                         "under the plateau schedule it takes effect with --restart-lr")
    tr.add_argument("--restart-lr", action="store_true",
                    help="with --resume: set the learning rate back to the (possibly --set) lr and start a new "
                         "schedule cycle at the current step (a warm restart)")
    tr.add_argument("--arch", choices=["seq2seq", "attention"], default="seq2seq",
                    help="seq2seq: the seed's (last encoder state is the context); attention: bidirectional "
                         "encoder of hidden/2 per direction, bridge, attentional decoder")
    tr.add_argument("--attention", choices=["bahdanau", "general", "dot"], default="general",
                    help="the attention score (--arch attention)")
    tr.add_argument("--no-input-feeding", action="store_true",
                    help="do not feed the attentional state into the next step (--arch attention)")
    tr.add_argument("--hidden", type=int, default=384)
    tr.add_argument("--layers", type=int, default=2)
    tr.add_argument("--embedding", type=int, default=128)
    tr.add_argument("--dropout", type=float, default=0.2)
    tr.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
    rev = tr.add_mutually_exclusive_group()
    rev.add_argument("--no-reverse-source", action="store_true",
                     help="feed letters in reading order (the default for --arch attention)")
    rev.add_argument("--reverse-source", action="store_true",
                     help="feed letters reversed (the default for --arch seq2seq)")
    tr.add_argument("--train-words", type=int, default=None, help="use only the first N train words (quick runs)")
    _add_train_args(tr, TrainConfig(epochs=40, lr_threshold=0.01))

    ev = g2p.add_parser("eval", help="WER and PER of a model on the dev or test split")
    ev.add_argument("--model", action="append", default=None, help=MODEL_HELP)
    ev.add_argument("--split", choices=["dev", "test"], default="dev")
    ev.add_argument("--beam", type=int, default=1)
    ev.add_argument("--alpha", type=float, default=1.0,
                    help="beam search's length normalisation: log-probability / length**alpha (0: none)")

    ex = g2p.add_parser("export", help="copy a model folder (e.g. RUN/best), optionally as float16 or int8")
    ex.add_argument("--model", required=True, help="model folder to copy (or a shipped model's name)")
    ex.add_argument("--out", required=True, help="destination folder")
    store = ex.add_mutually_exclusive_group()
    store.add_argument("--dtype", choices=["float32", "float16", "int8"], default="float32",
                       help="how the weights are stored: int8 is a quarter of float32 (one scale per row)")
    store.add_argument("--float16", dest="dtype", action="store_const", const="float16", help="= --dtype float16")

    av = g2p.add_parser("average", help="average the weights of model folders (e.g. RUN/epochs/*) into one")
    av.add_argument("models", nargs="+", help="model folders of one architecture")
    av.add_argument("--out", required=True, help="destination folder")

    pr = g2p.add_parser("predict", help="pronounce words: one 'word<TAB>PH O N' line each")
    pr.add_argument("words", nargs="*")
    pr.add_argument("--input", default=None, help="a file with one word per line")
    pr.add_argument("--model", action="append", default=None, help=MODEL_HELP)
    pr.add_argument("--beam", type=int, default=1)
    pr.add_argument("--alpha", type=float, default=1.0,
                    help="beam search's length normalisation: log-probability / length**alpha (0: none)")
    pr.add_argument("--nbest", type=int, default=1)
    pr.add_argument("--plot", default=None, metavar="OUT.png",
                    help="draw the attention heatmap (letters x phonemes) of one WORD (attention models)")
    return parser


def cmd_demo(args):
    from minis2s.demo import DemoConfig, DigitTask
    from minis2s.random import manual_seed

    out = args.out or os.path.join("runs", f"demo-{args.task}")
    task = DigitTask(DemoConfig(task=args.task, hidden=args.hidden, seed=args.seed))
    manual_seed(args.seed)
    model = task.build_model()
    print(f"training the seed's Seq2Seq to {args.task} digit strings of length 3-10 "
          f"({len(task.train_src)} train, {len(task.splits['test'])} held out); run folder {out}")
    t0 = time.perf_counter()
    train(task, model, _train_config(args, target=0.0), out)
    from minis2s.checkpoint import load_weights, read_model_dir

    best = os.path.join(out, "best")
    if os.path.isdir(best):  # the best epoch's weights
        _, weights = read_model_dir(best)
        load_weights(model, weights, best)
    else:  # --max-steps stopped the run before its first epoch ended: no best/ yet
        print("no epoch finished: evaluating the weights as trained", file=sys.stderr)
    acc = task.accuracy(model, "test")
    print(f"held-out exact-sequence accuracy: {100 * acc:.2f}% on {len(task.splits['test'])} strings "
          f"({time.perf_counter() - t0:.0f} s)")
    samples = task.splits["test"][:5]
    for s, p in zip(samples, task.predict(model, samples)):
        print(f"  {s:>10} -> {p}")
    return 0


RESUME_SETTINGS = ("epochs", "lr", "lr_schedule", "lr_threshold", "lr_patience", "lr_factor", "min_lr", "patience",
                   "clip", "teacher_forcing", "teacher_forcing_end", "checkpoint_every", "target", "keep_epochs")


def _parse_settings(items) -> dict:
    """["epochs=60", "lr_schedule=cosine"] -> {"epochs": 60, "lr_schedule": "cosine"} (JSON values,
    else strings); only the settings a resumed run may change (not the data, batches or seed)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in RESUME_SETTINGS:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(RESUME_SETTINGS)}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_g2p_train(args):
    from minis2s.data.cmudict import load_split
    from minis2s.g2p import G2PModelConfig, G2PTask, build_model
    from minis2s.random import manual_seed

    cfg_path = os.path.join(args.out, "config.json")
    if args.resume:
        if not os.path.isfile(cfg_path):
            raise CheckpointError(f"--resume: {args.out!r} has no config.json (not a run folder)")
        with open(cfg_path) as f:
            saved = json.load(f)
        changes = _parse_settings(args.set)
        tc = TrainConfig.from_dict({**saved["train"], **changes, "progress": not args.quiet,
                                    "max_steps": args.max_steps})
        model_cfg = G2PModelConfig.from_dict(saved["task"]["model"])
        train_words = saved.get("train_words")
        if changes or args.restart_lr:  # the run folder says how its later epochs were trained
            from minis2s.atomic import atomic_write_json
            from minis2s.checkpoint import latest_checkpoint

            epoch = latest_checkpoint(args.out)[1]["epoch"]  # no checkpoint: refused before the write
            saved["train"].update(changes)
            saved.setdefault("changes", []).append(
                {"from_epoch": epoch, "set": changes, "restart_lr": bool(args.restart_lr)})
            atomic_write_json(cfg_path, saved)
        print(f"resuming {args.out} with its saved configuration"
              + (f", changed: {changes}" if changes else "") + (", lr restarted" if args.restart_lr else ""),
              file=sys.stderr)
    else:
        if args.set or args.restart_lr:
            raise ValueError("--set and --restart-lr change a run being resumed: they need --resume")
        if os.path.isfile(cfg_path):
            raise ValueError(f"--out {args.out!r} already holds a run: add --resume, or choose another folder")
        tc = _train_config(args)
        reverse = args.reverse_source or (args.arch == "seq2seq" and not args.no_reverse_source)
        model_cfg = G2PModelConfig(arch=args.arch, hidden=args.hidden, layers=args.layers, embedding=args.embedding,
                                   dropout=args.dropout, cell=args.cell, reverse_source=reverse,
                                   attention=args.attention, input_feeding=not args.no_input_feeding)
        train_words = args.train_words
    words = load_split("train")
    if train_words is not None:
        words = dict(list(words.items())[:train_words])
    task = G2PTask(model_cfg, train_words=words)
    manual_seed(tc.seed)
    model = build_model(model_cfg, task.src_vocab, task.trg_vocab)
    n = sum(p.data.size for p in model.parameters())
    print(f"G2P {model_cfg}: {n:,} parameters, {len(task.train_src):,} training pairs", file=sys.stderr)
    state = train(task, model, tc, args.out, resume=args.resume, restart_lr=args.restart_lr)
    if not args.resume and train_words is not None:  # remember the subset for --resume
        with open(cfg_path) as f:
            saved = json.load(f)
        saved["train_words"] = train_words
        from minis2s.atomic import atomic_write_json

        atomic_write_json(cfg_path, saved)
    if state["history"]:
        best = min(h["dev_wer"] for h in state["history"])
        print(f"best dev WER {100 * best:.2f}%; model in {os.path.join(args.out, 'best')}")
    return 0


def _load_g2p(models):
    """--model given once (a folder or a shipped name), several times (an ensemble), or not at all:
    G2P takes each of these as it is (a one-item list is that one model)."""
    from minis2s.g2p import G2P

    return G2P(models)


def cmd_g2p_eval(args):
    from minis2s.data.cmudict import load_split
    from minis2s.g2p import evaluate

    g2p = _load_g2p(args.model)
    words = load_split(args.split)
    t0 = time.perf_counter()
    r = evaluate(g2p, words, beam=args.beam, alpha=args.alpha)
    dt = time.perf_counter() - t0
    decoding = "greedy" if args.beam == 1 else f"beam {args.beam}, alpha {args.alpha:g}"
    print(f"{args.split}: WER {100 * r['wer']:.2f}%  PER {100 * r['per']:.2f}%  "
          f"({r['words']} words, {decoding}, {r['words'] / dt:.0f} words/s)")
    return 0


def cmd_g2p_export(args):
    from minis2s.checkpoint import export_model_dir
    from minis2s.g2p import resolve_model

    export_model_dir(resolve_model(args.model), args.out, stored_dtype=args.dtype)
    _load_g2p(args.out)  # proves the copy loads
    size = os.path.getsize(os.path.join(args.out, "model.safetensors"))
    print(f"wrote {args.out} ({size / 1e6:.1f} MB of weights, stored as {args.dtype})")
    return 0


def cmd_g2p_average(args):
    from minis2s.checkpoint import average_model_dirs

    average_model_dirs(args.models, args.out)
    _load_g2p(args.out)  # proves the average loads
    print(f"wrote {args.out}: the mean of {len(args.models)} models")
    return 0


def cmd_g2p_predict(args):
    words = list(args.words)
    if args.input is not None:
        if not os.path.isfile(args.input):
            raise FileNotFoundError(f"--input {args.input!r} does not exist")
        with open(args.input, encoding="utf-8") as f:
            words += [w.strip() for w in f if w.strip()]
    if not words:
        raise ValueError("give words to pronounce, or --input FILE")
    if args.plot is not None and len(words) != 1:
        raise ValueError(f"--plot draws the attention of one word, got {len(words)} words")
    g2p = _load_g2p(args.model)
    if args.plot is not None:
        g2p.check_attention()  # before anything is printed
    results = g2p.predict(words, beam=args.beam, nbest=args.nbest, alpha=args.alpha)
    for w, hyps in zip(words, results):
        for phonemes, _ in hyps:
            print(f"{w}\t{' '.join(phonemes)}")
    if args.plot is not None:
        from minis2s.g2p import plot_attention

        best = results[0][0][0]
        letters, outputs, weights = g2p.attention(words[0], best)
        decoding = "greedy" if args.beam == 1 else f"beam {args.beam}"
        plot_attention(letters, outputs, weights, args.plot, title=f"{words[0]} -> {' '.join(best)} ({decoding})")
        print(f"attention heatmap written to {args.plot}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"demo": cmd_demo}.get(args.command) or {
        "train": cmd_g2p_train, "eval": cmd_g2p_eval, "predict": cmd_g2p_predict, "export": cmd_g2p_export,
        "average": cmd_g2p_average}[args.action]
    try:
        return handler(args)
    except EXPECTED_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"minis2s: error: {msg}", file=sys.stderr)
        return 1 if isinstance(e, TrainingDiverged) else 2
    except KeyboardInterrupt:
        print("minis2s: interrupted (the last checkpoint is intact; --resume continues)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
