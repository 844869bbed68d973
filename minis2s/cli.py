"""The ``minis2s`` command (also ``python -m minis2s``).

Any sequence task, from your own files (TSV ``source<TAB>target`` or JSONL ``{"src", "trg"}``):
    minis2s train --train FILE --dev FILE --out DIR [model, data and training flags] [--resume]
    minis2s eval --model DIR --data FILE [--beam K] [--metric exact|wer|cer|bleu|chrf] [--json]
    minis2s predict --model DIR [--input FILE] [--beam K] [--nbest N]     (stdin without --input)
    minis2s data example dates --out DIR      a data set the project generates
    minis2s data cmudict --out DIR [--direction g2p|p2g]   CMUdict's split as TSV

Presets of the same training system:
    minis2s demo reverse|sort                 train on a synthetic task, report held-out accuracy
    minis2s g2p train --out DIR [--arch seq2seq|attention] [--resume]    G2P on CMUdict
    minis2s g2p eval [--model DIR [--model DIR...]] [--split dev|test] [--beam K [--alpha A]]
    minis2s g2p export --model DIR --out DIR [--dtype float32|float16|int8|int4]
    minis2s g2p average DIR... --out DIR      (checkpoint averaging, e.g. RUN/epochs/*)
    minis2s g2p predict WORD... | --input FILE [--beam K] [--nbest N] [--model DIR] [--plot OUT.png]
    minis2s g2p explain WORD [--model M] [--plot OUT.png]   each step's top-5, gates, gradient per letter
    minis2s g2p predict --text "TEXT" | --text - [--no-lexicon] [--no-stress] [--alternatives]

Every flag of a setting comes from its declaration (minis2s/settings.py), default included;
``--help`` shows every flag's default (``HelpWithDefaults``).
Bad input prints one line ``minis2s: error: ...`` and exits with status 2, never a traceback;
a diverged run exits with 1, an interrupted one (SIGINT/SIGTERM, after its checkpoint) 130/143.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from minis2s.allocator import keep_freed_memory
from minis2s.checkpoint import CheckpointError
from minis2s.g2p import DEFAULT_MODEL, PRETRAINED_ENSEMBLES, PRETRAINED_MODELS
from minis2s.metrics import METRICS
from minis2s.models.config import ModelConfig, parameter_shapes
from minis2s.quantize import STORED_DTYPES
from minis2s.settings import add_arguments, parse_assignment, settings_from_args
from minis2s.task import DataConfig
from minis2s.training import RunFolder, TrainConfig, TrainingDiverged, TrainingInterrupted, train
from minis2s.training.distributed import one_voice, world

EXPECTED_ERRORS = (ValueError, TypeError, KeyError, CheckpointError, FileNotFoundError, RuntimeError)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


class HelpWithDefaults(argparse.HelpFormatter):
    """--help with each flag's default, the value the command really starts from (a preset's
    where it sets one: ``parser.get_default``, read when the help is printed).

    " (default: X)" is added to a flag's help unless the help already says its default (the
    settings' flags say it through ``%(default)s``; a few flags describe theirs in words), the
    flag is required, or it has no value to show: None, an empty list, or an on/off switch
    (``--resume``: off unless given)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or action.required or default is None or default is argparse.SUPPRESS
                or default == [] or (action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction))):
            return text
        return f"{text} (default: %(default)s)"


def _command(sub, name: str, **kw):
    """A (sub)command whose --help shows every default."""
    return sub.add_parser(name, formatter_class=HelpWithDefaults, **kw)


# ---- the training commands: one runner, three kinds of task ----------------------------------
def _add_run_args(p) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint, with its own settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --resume: change a training setting (one of: " + ", ".join(TrainConfig.resumable())
                        + "); recorded in RUN/changes.jsonl. A new lr is the cosine cycle's peak; under the "
                          "plateau schedule it takes effect with --restart-lr")
    p.add_argument("--restart-lr", action="store_true",
                   help="with --resume: set the learning rate back to lr and start a new schedule cycle here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_training(args, parser, make_task, setting_classes, teacher_folders=None, init_folder=None) -> tuple:
    """Train (or resume) into ``args.out``. ``make_task(saved)`` builds the task from the flags
    (``saved`` None) or from a resumed run's config.json; ``teacher_folders(distill_from)``: the
    teachers' model folders (default: distill_from's comma-separated folders as they are);
    ``init_folder(init_from)``: the model folder init_from names (default: init_from as it is).
    Returns (task, model, state)."""
    from minis2s.random import manual_seed

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for cls in setting_classes for k in _given(args, parser, cls)]
        if given:
            raise ValueError(f"--resume continues a run with its own settings: {', '.join(given)} cannot be given "
                             f"(change a training setting with --set KEY=VALUE)")
        changes = dict(parse_assignment(TrainConfig, item) for item in args.set)  # before the folder is touched
        saved, in_force = world().from_root(lambda: _saved_settings(args.out))  # rank 0 reads the folder
        config = TrainConfig.from_dict({**in_force, **changes, "max_steps": args.max_steps,
                                        "time_limit": args.time_limit}, where=f"{args.out}/config.json")
        task = make_task(saved)
        expect = parameter_shapes(task.model_config, len(task.src), len(task.trg))
        world().from_root(lambda: RunFolder(args.out, saved).check_latest_shapes(expect))  # before allocating
    else:
        if args.set or args.restart_lr:
            raise ValueError("--set and --restart-lr change a run being resumed: they need --resume")
        world().from_root(lambda: RunFolder.check_new(args.out))  # before any data is read
        config = settings_from_args(TrainConfig, args)
        task = make_task(None)
    manual_seed(config.seed)
    model = task.build_model()
    n = sum(p.data.size for p in model.parameters())
    _stderr(f"{task.name}: {task.model_config.arch} model, {n:,} parameters, {len(task.train_pairs):,} training "
            f"pairs, vocabularies {len(task.src)}/{len(task.trg)}; run folder {args.out}")
    teachers = None
    if config.distill_from is not None and teacher_folders is not None:
        teachers = teacher_folders(config.distill_from)
    start = None
    if config.init_from is not None and init_folder is not None and not args.resume:
        start = init_folder(config.init_from)
    state = train(task, model, config, args.out, resume=args.resume, restart_lr=args.restart_lr,
                  progress=not args.quiet, teachers=teachers, init_folder=start)
    return task, model, state


def _saved_settings(out) -> tuple[dict, dict]:
    """A run's config.json and the training settings in force (its changes applied)."""
    run = RunFolder.open(out)
    return run.config, run.train_settings()


# With --resume every setting comes from the run's config.json (a flag given anyway is refused),
# except these limits of one invocation, which are read from the command line each time.
_INVOCATION = set(TrainConfig.INVOCATION)


def _given(args, parser, cls) -> list[str]:
    from dataclasses import fields

    flags = {a.dest for a in parser._actions if a.option_strings}
    out = []
    for f in fields(cls):
        if f.name in _INVOCATION or f.name not in flags:
            continue
        if getattr(args, f.name) != parser.get_default(f.name):
            out.append(f.name)
    return out


METRIC_NAMES = {"exact": "exact match", "wer": "WER", "per": "PER", "cer": "CER", "bleu": "BLEU", "chrf": "chrF"}


def _format_metric(name: str, value: float) -> str:
    """BLEU and chrF on sacrebleu's 0-100 scale; the rates and exact match as percentages."""
    return f"{value:.2f}" if name in ("bleu", "chrf") else f"{100 * value:.2f}%"


def _report_best(task, state, out: str) -> None:
    if state.history:
        best = max if not task.lower_is_better else min
        rec = best(state.history, key=lambda h: h[f"dev_{task.metric}"])
        value = rec[f"dev_{task.metric}"]
        print(f"best dev {METRIC_NAMES.get(task.metric, task.metric)} {_format_metric(task.metric, value)} (epoch {rec['epoch']}); model in {os.path.join(out, 'best')}, "
              f"last step in {os.path.join(out, 'last')}")


def cmd_train(args, parser):
    from minis2s.task import Seq2SeqTask

    def make_task(saved):
        if saved is None:
            if args.train is None or args.dev is None:
                raise ValueError("a new run needs --train FILE and --dev FILE")
            model, data = settings_from_args(ModelConfig, args), settings_from_args(DataConfig, args)
            train_file, dev_file = os.path.abspath(args.train), os.path.abspath(args.dev)
        else:
            model = ModelConfig.from_dict(saved["task"]["model"])
            data = DataConfig.from_dict(saved["data"]["settings"])
            train_file, dev_file = saved["data"]["train_file"], saved["data"]["dev_file"]
        return Seq2SeqTask(train_file, dev_file, model=model, data=data, log=_stderr)

    if args.resume and (args.train is not None or args.dev is not None):
        raise ValueError("--resume reads the run's own --train and --dev files (from its config.json): "
                         "do not give them")
    task, _, state = run_training(args, parser, make_task, (ModelConfig, DataConfig, TrainConfig))
    _report_best(task, state, args.out)
    return 0


def cmd_demo(args, parser):
    from minis2s.checkpoint import load_weights, read_model_dir
    from minis2s.demo import DemoConfig, DigitTask

    args.out = args.out or os.path.join("runs", f"demo-{args.task}")

    def make_task(saved):
        cfg = (DemoConfig(**saved["data"]["demo"]) if saved else
               settings_from_args(DemoConfig, args, task=args.task, seed=args.seed))
        return DigitTask(cfg)

    t0 = time.perf_counter()
    task, model, state = run_training(args, parser, make_task, (DemoConfig, TrainConfig))
    best = os.path.join(args.out, "best")
    if os.path.isdir(best):  # the best epoch's weights
        _, weights = read_model_dir(best)
        load_weights(model, weights, best)
    else:  # a limit stopped the run before its first epoch ended: no best/ yet
        _stderr("no epoch finished: evaluating the weights as trained")
    acc = task.accuracy(model, "test")
    print(f"held-out exact-sequence accuracy: {100 * acc:.2f}% on {len(task.splits['test'])} strings "
          f"({time.perf_counter() - t0:.0f} s in all, step {state.step})")
    samples = task.splits["test"][:5]
    for s, p in zip(samples, task.predict(model, samples)):
        print(f"  {s:>10} -> {p}")
    return 0


def cmd_g2p_train(args, parser):
    from minis2s.g2p import G2PTask, model_folders
    from minis2s.training.distill import teacher_folders

    def make_task(saved):
        if saved is None:
            return G2PTask(settings_from_args(ModelConfig, args), train_limit=args.train_limit, stress=args.stress,
                           transfer=None if args.transfer is None else os.path.abspath(args.transfer))
        # a changed transfer file is refused on resume by the training data's digest
        return G2PTask(ModelConfig.from_dict(saved["task"]["model"]),
                       train_limit=saved["data"]["settings"]["train_limit"],
                       stress=saved["task"].get("stress", False) is True,
                       transfer=saved["data"].get("transfer_file"))

    for flag, given in (("--stress", args.stress), ("--transfer", args.transfer is not None)):
        if args.resume and given:
            raise ValueError(f"--resume continues a run with its own settings: {flag} cannot be given")

    # --distill-from takes shipped names too ("ensemble": its members), as --model does
    task, _, state = run_training(args, parser, make_task, (ModelConfig, DataConfig, TrainConfig),
                                  teacher_folders=lambda names: model_folders(teacher_folders(names)),
                                  init_folder=_init_folder)
    _report_best(task, state, args.out)
    return 0


def _init_folder(name: str) -> str:
    """g2p train --init-from: a model folder, or a shipped model's name (one model, not an ensemble)."""
    from minis2s.g2p import resolve_model

    try:
        return resolve_model(name)
    except ValueError as e:
        raise ValueError(f"--init-from: {e}") from e


def cmd_g2p_transfer(args, parser):
    from minis2s.data import write_pairs
    from minis2s.data.cmudict import load_cmudict, load_split
    from minis2s.data.wordlists import english_words, sample_like
    from minis2s.g2p import G2P, agreed, transfer_set

    if os.path.exists(args.out):
        raise ValueError(f"--out {args.out}: the file exists (a transfer set is never replaced: choose another name)")
    if args.words < 1:
        raise ValueError(f"--words must be >= 1, got {args.words}")
    g2p = G2P(args.model)  # before the word lists are read: a bad --model fails at once
    judges = [G2P(name) for name in args.agree or ()]
    for flag, model in [("--model", g2p)] + [("--agree", j) for j in judges]:
        if model.stress:
            raise ValueError(f"{flag}: a transfer set is unstressed CMUdict phonemes; this model has stress digits")
    words = sample_like(english_words(exclude=load_cmudict()), load_split("train"), args.words, seed=args.seed)
    t0 = time.perf_counter()
    pairs, dropped = transfer_set(g2p, words, beam=args.beam)
    labelled = len(pairs)
    dt = time.perf_counter() - t0
    if judges:
        pairs = agreed(pairs, judges)
    write_pairs(args.out, pairs)
    teacher = ' + '.join(args.model) if args.model else f'the default model ({DEFAULT_MODEL})'
    _stderr(f"{labelled:,} words labelled by {teacher} "
            f"({'greedy' if args.beam == 1 else f'beam {args.beam}'}, {labelled / dt:.0f} words/s); "
            f"{dropped} with no phonemes left out"
            + (f"; {len(pairs):,} kept (pronounced the same by {' and '.join(args.agree)})" if judges else "")
            + f"; written to {args.out}")
    return 0


# ---- using a trained model ------------------------------------------------------------------
def _read_lines(path) -> list[str]:
    """The lines of ``--input`` (stdin for None or "-"), without their line ends; every line counts."""
    from minis2s.data.pairs import read_lines, split_lines

    if path is None or path == "-":
        return split_lines(sys.stdin.read())
    return read_lines(path, name="--input")


def _warn_unknown(what: str):
    def warn(i, tokens):
        _stderr(f"minis2s: warning: {what} {i + 1}: {sorted(set(tokens))} not in the model's vocabulary "
                "(read as <unk>)")
    return warn


def cmd_predict(args, parser):
    from minis2s.translator import load_model

    translator = load_model(args.model)
    lines = _read_lines(args.input)
    results = translator.translate(lines, beam=args.beam, nbest=args.nbest, alpha=args.alpha,
                                   batch_size=args.batch_size, on_unknown=_warn_unknown("line"))
    out = sys.stdout
    for r in results:
        if args.nbest is None:
            out.write(r + "\n")
        else:
            out.write("\t".join(f"{h}\t{s:.4f}" for h, s in r) + "\n")
    return 0


def cmd_eval(args, parser):
    from minis2s.data import read_pairs
    from minis2s.task import evaluate_translator
    from minis2s.translator import load_model

    translator = load_model(args.model)
    pairs = read_pairs(args.data, name="--data")
    unknown = []
    t0 = time.perf_counter()
    m = evaluate_translator(translator, pairs, beam=args.beam, alpha=args.alpha, batch_size=args.batch_size,
                            on_unknown=lambda i, tokens: unknown.append(i))
    dt = time.perf_counter() - t0
    if unknown:
        _stderr(f"minis2s: warning: {len(unknown)} of {m['examples']} sources hold symbols outside the model's "
                "vocabulary (read as <unk>)")
    chosen = args.metric or list(METRICS)
    if args.json:
        print(json.dumps({**{k: m[k] for k in chosen}, "examples": m["examples"], "pairs": len(pairs),
                          "beam": args.beam, "unknown_sources": len(unknown)}))
    else:
        shown = [f"{k} {_format_metric(k, m[k])}" for k in chosen]
        decoding = "greedy" if args.beam == 1 else f"beam {args.beam}, alpha {args.alpha:g}"
        print(f"{args.data}: {'  '.join(shown)}  ({m['examples']} examples from {len(pairs)} pairs, {decoding}, "
              f"{m['examples'] / dt:.0f} examples/s)")
    return 0


def cmd_data(args, parser):
    from minis2s.data.examples import write_cmudict, write_example

    if args.source == "cmudict":
        directions = ("g2p", "p2g") if args.direction == "both" else (args.direction,)
        for d in directions:
            for split, path in write_cmudict(args.out, direction=d).items():
                print(f"{split}\t{path}")
    else:
        for split, path in write_example(args.source, args.out, n_train=args.train_size, n_dev=args.dev_size,
                                         n_test=args.test_size, seed=args.seed).items():
            print(f"{split}\t{path}")
    return 0


def cmd_seal(args, parser):
    from minis2s.checkpoint import seal_model_dir

    print(f"{args.folder}\t{seal_model_dir(args.folder)}")
    return 0


# ---- G2P's product commands -------------------------------------------------------------------
MODEL_HELP = (f"a model folder, or a shipped model by name: {', '.join([*PRETRAINED_MODELS, *PRETRAINED_ENSEMBLES])} "
              f"(default: {DEFAULT_MODEL}); give --model more than once to decode with an ensemble of them")


def _load_g2p(models):
    """--model given once (a folder or a shipped name), several times (an ensemble), or not at all:
    G2P takes each of these as it is (a one-item list is that one model)."""
    from minis2s.g2p import G2P

    return G2P(models)


def cmd_g2p_eval(args, parser):
    from minis2s.data.cmudict import load_split
    from minis2s.g2p import evaluate

    g2p = _load_g2p(args.model)
    words = load_split(args.split, stress=g2p.stress)
    t0 = time.perf_counter()
    r = evaluate(g2p, words, beam=args.beam, alpha=args.alpha)
    dt = time.perf_counter() - t0
    decoding = "greedy" if args.beam == 1 else f"beam {args.beam}, alpha {args.alpha:g}"
    plain = (f"; stress ignored: WER {100 * r['wer_no_stress']:.2f}%  PER {100 * r['per_no_stress']:.2f}%"
             if g2p.stress else "")
    print(f"{args.split}: WER {100 * r['wer']:.2f}%  PER {100 * r['per']:.2f}%{plain}  "
          f"({r['words']} words, {decoding}, {r['words'] / dt:.0f} words/s)")
    return 0


def cmd_g2p_export(args, parser):
    from minis2s.checkpoint import export_model_dir
    from minis2s.g2p import resolve_model

    export_model_dir(resolve_model(args.model), args.out, stored_dtype=args.dtype)
    _load_g2p(args.out)  # proves the copy loads
    size = os.path.getsize(os.path.join(args.out, "model.safetensors"))
    print(f"wrote {args.out} ({size / 1e6:.1f} MB of weights, stored as {args.dtype})")
    return 0


def cmd_g2p_average(args, parser):
    from minis2s.checkpoint import average_model_dirs

    average_model_dirs(args.models, args.out)
    _load_g2p(args.out)  # proves the average loads
    print(f"wrote {args.out}: the mean of {len(args.models)} models")
    return 0


def cmd_g2p_predict(args, parser):
    from minis2s.g2p import encode_words

    if args.text is not None:
        return _predict_text(args)
    for flag, given in (("--no-lexicon", args.no_lexicon), ("--stress/--no-stress", args.stress is not None),
                        ("--alternatives", args.alternatives)):
        if given:
            raise ValueError(f"{flag} applies to --text")
    words = [("argument", i, w) for i, w in enumerate(args.words)]
    if args.input is not None:
        lines = _read_lines(args.input)
        words += [("line", i, w.strip()) for i, w in enumerate(lines) if w.strip()]
        if not words:
            raise ValueError(f"--input {args.input!r} holds no words")
    if not words:
        raise ValueError("give words to pronounce, or --input FILE")
    if args.plot is not None and len(words) != 1:
        raise ValueError(f"--plot draws the attention of one word, got {len(words)} words")
    g2p = _load_g2p(args.model)
    if args.plot is not None:
        g2p.check_attention()  # before anything is printed
    good, failed = [], 0
    for where, i, w in words:  # a bad word gets a message; the others still get their answers
        try:
            encode_words([w], g2p.src_vocab, False)
            good.append(w)
        except (ValueError, TypeError, KeyError) as e:
            failed += 1
            _stderr(f"minis2s: error: {where} {i + 1}: {e}")
    results = dict(zip(good, g2p.predict(good, beam=args.beam, nbest=args.nbest, alpha=args.alpha)))
    for _, _, w in words:
        for phonemes, _ in results.get(w, []):
            print(f"{w}\t{' '.join(phonemes)}")
    if args.plot is not None and good:
        from minis2s.g2p import plot_attention

        best = results[good[0]][0][0]
        letters, outputs, weights = g2p.attention(good[0], best)
        decoding = "greedy" if args.beam == 1 else f"beam {args.beam}"
        plot_attention(letters, outputs, weights, args.plot, title=f"{good[0]} -> {' '.join(best)} ({decoding})")
        _stderr(f"attention heatmap written to {args.plot}")
    return 2 if failed else 0


def _predict_text(args):
    """``g2p predict --text``: one ``token<TAB>PH O N`` line per token (punctuation: nothing after
    the tab); with --alternatives one more line per other lexicon pronunciation."""
    if args.words or args.input is not None:
        raise ValueError("--text takes the text alone: give WORDs, --input FILE or --text, not several")
    if args.nbest != 1 or args.plot is not None:
        raise ValueError("--nbest and --plot apply to words, not to --text")
    text = sys.stdin.read() if args.text == "-" else args.text
    g2p = _load_g2p(args.model)
    for tok in g2p.text(text, lexicon=not args.no_lexicon, stress=args.stress, beam=args.beam):
        for phonemes in [tok.phonemes] + (tok.alternatives if args.alternatives else []):
            print(f"{tok.text}\t{' '.join(phonemes)}")
    return 0


def cmd_g2p_explain(args, parser):
    from minis2s.explain import explain, format_explanation, plot_explanation

    ex = explain(_load_g2p(args.model), args.word)
    print(format_explanation(ex))
    if args.plot is not None:
        plot_explanation(ex, args.plot)
        _stderr(f"figure written to {args.plot}")
    return 0


# ---- the parser -------------------------------------------------------------------------------
def _add_beam_args(p) -> None:
    p.add_argument("--beam", type=int, default=1, help="beam width (1: greedy)")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="beam search's length normalisation: log-probability / length**alpha (0: none)")


def _add_decoding_args(p, *, nbest: bool) -> None:
    _add_beam_args(p)
    p.add_argument("--batch-size", type=int, default=256, help="inputs decoded at once")
    if nbest:
        p.add_argument("--nbest", type=int, default=None,
                       help="print the N best hypotheses, each followed by its score, tab-separated")


def build_parser():
    from minis2s.data.examples import EXAMPLES
    from minis2s.demo import DEMO_TRAIN_DEFAULTS, DemoConfig
    from minis2s.g2p import G2P_TRAIN_DEFAULTS

    parser = argparse.ArgumentParser(prog="minis2s", description="sequence-to-sequence from scratch in NumPy",
                                     formatter_class=HelpWithDefaults)
    sub = parser.add_subparsers(dest="command", required=True)

    tr = _command(sub, "train", help="train a model on your own pairs (TSV or JSONL)")
    tr.add_argument("--train", default=None, help="training pairs: TSV (source<TAB>target) or .jsonl {src, trg}")
    tr.add_argument("--dev", default=None, help="dev pairs (picks the best epoch)")
    tr.add_argument("--out", required=True, help="run folder (config.json, checkpoints, best/, last/, metrics)")
    model_args = tr.add_argument_group("model")
    add_arguments(model_args, ModelConfig)
    add_arguments(tr.add_argument_group("data"), DataConfig)
    add_arguments(tr.add_argument_group("training"), TrainConfig)
    _add_run_args(tr)
    tr.set_defaults(handler=cmd_train)

    ev = _command(sub, "eval", help="score a trained model on pairs")
    ev.add_argument("--model", required=True, help="a model folder (e.g. RUN/best)")
    ev.add_argument("--data", required=True, help="pairs to score: TSV or JSONL")
    ev.add_argument("--metric", action="append", choices=METRICS, default=None,
                    help="print only this metric (repeatable; default: all)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    _add_decoding_args(ev, nbest=False)
    ev.set_defaults(handler=cmd_eval)

    pr = _command(sub, "predict", help="translate lines: one output line per input line")
    pr.add_argument("--model", required=True, help="a model folder (e.g. RUN/best)")
    pr.add_argument("--input", default=None, help="a UTF-8 file of inputs, one per line (default: stdin)")
    _add_decoding_args(pr, nbest=True)
    pr.set_defaults(handler=cmd_predict)

    da = _command(sub, "data", help="write a data set as TSV files")
    da_sub = da.add_subparsers(dest="source", required=True)
    ex = _command(da_sub, "example", help="a generated data set")
    ex.add_argument("source", choices=EXAMPLES)
    ex.add_argument("--out", required=True, help="folder for NAME-train.tsv, NAME-dev.tsv, NAME-test.tsv")
    ex.add_argument("--train-size", type=int, default=20000, help="training pairs")
    ex.add_argument("--dev-size", type=int, default=1000, help="dev pairs")
    ex.add_argument("--test-size", type=int, default=2000, help="test pairs")
    ex.add_argument("--seed", type=int, default=0, help="seeds the generated pairs")
    cm = _command(da_sub, "cmudict", help="CMUdict's train/dev/test split (minis2s g2p's) as TSV")
    cm.add_argument("--out", required=True, help="folder for the TSV files")
    cm.add_argument("--direction", choices=["g2p", "p2g", "both"], default="g2p",
                    help="g2p: word -> phonemes; p2g: phonemes -> word")
    da.set_defaults(handler=cmd_data)
    cm.set_defaults(source="cmudict")

    se = _command(sub, "seal", help="vouch for a model folder edited by hand: write its digest into model.json "
                                     "(a folder whose files do not match its digest is refused on loading)")
    se.add_argument("folder", help="the model folder")
    se.set_defaults(handler=cmd_seal)

    demo = _command(sub, "demo", help="train on a synthetic task (reverse or sort digits)")
    demo.add_argument("task", choices=["reverse", "sort"])
    demo.add_argument("--out", default=None, help="run folder (default: runs/demo-TASK)")
    add_arguments(demo.add_argument_group("demo"), DemoConfig, exclude=("task", "seed"))
    add_arguments(demo.add_argument_group("training"), TrainConfig, defaults=DEMO_TRAIN_DEFAULTS)
    _add_run_args(demo)
    demo.set_defaults(handler=cmd_demo)

    g2p = _command(sub, "g2p", help="grapheme-to-phoneme on CMUdict").add_subparsers(dest="action", required=True)
    gt = _command(g2p, "train", help="train a model (seq2seq: LSTM encoder-decoder; or --arch attention)")
    gt.add_argument("--out", required=True, help="run folder (checkpoints, metrics, curves, best/, last/)")
    add_arguments(gt.add_argument_group("model"), ModelConfig)
    add_arguments(gt.add_argument_group("data"), DataConfig, only=("train_limit",))
    gt.add_argument("--stress", action="store_true",
                    help="phonemes with CMUdict's stress digits (AH0, OW1: 69 symbols instead of 39)")
    gt.add_argument("--transfer", default=None, metavar="FILE",
                    help="extra training pairs from a teacher (g2p transfer), after CMUdict's: sequence-level "
                         "distillation (--train-limit counts both)")
    add_arguments(gt.add_argument_group("training"), TrainConfig, defaults=G2P_TRAIN_DEFAULTS)
    _add_run_args(gt)
    gt.set_defaults(handler=cmd_g2p_train)

    gk = _command(g2p, "transfer", help="a transfer set: English words outside CMUdict (the english-words "
                                        "package) pronounced by a teacher, for g2p train --transfer")
    gk.add_argument("--model", action="append", default=None, help=MODEL_HELP)
    gk.add_argument("--words", type=int, default=60000,
                    help="how many words (drawn with the lengths of CMUdict's training words)")
    gk.add_argument("--seed", type=int, default=0, help="which words are drawn")
    gk.add_argument("--beam", type=int, default=1, help="the teacher's beam (1: greedy)")
    gk.add_argument("--agree", action="append", default=None, metavar="MODEL",
                    help="keep only the words this model (greedy) pronounces as the teacher does; "
                         "repeat it for several: a confidence filter on the teacher's labels")
    gk.add_argument("--out", required=True, help="the TSV file to write (word<TAB>phonemes); never replaced")
    gk.set_defaults(handler=cmd_g2p_transfer)

    ge = _command(g2p, "eval", help="WER and PER of a model on the dev or test split")
    ge.add_argument("--model", action="append", default=None, help=MODEL_HELP)
    ge.add_argument("--split", choices=["dev", "test"], default="dev", help="the CMUdict split to score")
    _add_beam_args(ge)
    ge.set_defaults(handler=cmd_g2p_eval)

    gx = _command(g2p, "export", help="copy a model folder (e.g. RUN/best), optionally as float16, int8 or int4")
    gx.add_argument("--model", required=True, help="model folder to copy (or a shipped model's name)")
    gx.add_argument("--out", required=True, help="destination folder")
    store = gx.add_mutually_exclusive_group()
    store.add_argument("--dtype", choices=list(STORED_DTYPES), default="float32",
                       help="how the weights are stored: int8 is a quarter of float32 (one scale per row), "
                            "int4 5/32 (one scale per 16 weights of a row)")
    store.add_argument("--float16", dest="dtype", action="store_const", const="float16", help="= --dtype float16")
    gx.set_defaults(handler=cmd_g2p_export)

    ga = _command(g2p, "average", help="average the weights of model folders (e.g. RUN/epochs/*) into one")
    ga.add_argument("models", nargs="+", help="model folders of one architecture")
    ga.add_argument("--out", required=True, help="destination folder")
    ga.set_defaults(handler=cmd_g2p_average)

    gp = _command(g2p, "predict", help="pronounce words: one 'word<TAB>PH O N' line each; --text: running text")
    gp.add_argument("words", nargs="*", help="words to pronounce")
    gp.add_argument("--text", nargs="?", const="-", default=None, metavar="TEXT",
                    help="pronounce running text (stdin for '-' or no TEXT): one 'token<TAB>PH O N' line per "
                         "word, number and punctuation mark in reading order, nothing after the tab for "
                         "punctuation; CMUdict's first pronunciation where it has the word, else the model")
    gp.add_argument("--no-lexicon", action="store_true", help="--text: every word from the model, no CMUdict")
    gp.add_argument("--stress", action=argparse.BooleanOptionalAction, default=None,
                    help="--text: stress digits kept or stripped (default: as the model; --stress needs a "
                         "model trained with --stress)")
    gp.add_argument("--alternatives", action="store_true",
                    help="--text: also print CMUdict's other pronunciations of a word, one line each")
    gp.add_argument("--input", default=None, help="a file with one word per line")
    gp.add_argument("--model", action="append", default=None, help=MODEL_HELP)
    _add_beam_args(gp)
    gp.add_argument("--nbest", type=int, default=1, help="pronunciations printed per word, best first")
    gp.add_argument("--plot", default=None, metavar="OUT.png",
                    help="draw the attention heatmap (letters x phonemes) of one WORD (attention models)")
    gp.set_defaults(handler=cmd_g2p_predict)

    gw = _command(g2p, "explain", help="one word step by step: top-5 phonemes per step, and a figure of the internals")
    gw.add_argument("word", help="the word to explain")
    gw.add_argument("--model", action="append", default=None, help=MODEL_HELP + " (an ensemble: each member's internals)")
    gw.add_argument("--plot", default=None, metavar="OUT.png",
                    help="draw encoder gates, decoder cell state, attention and the gradient per letter")
    gw.set_defaults(handler=cmd_g2p_explain)
    return parser


def _subparser_of(parser, args):
    """The parser that parsed ``args``'s command (its defaults tell which flags were given)."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = action.choices[args.command]
    if args.command == "g2p":
        inner = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = inner.choices[args.action]
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the process is the command's own (not a caller's main(argv)): keep freed memory
        keep_freed_memory()
    try:
        with one_voice(world(), same_on_every_rank=(TrainingInterrupted, TrainingDiverged, ValueError, TypeError,
                                                    KeyError)):  # under mpiexec: rank 0 speaks
            return args.handler(args, _subparser_of(parser, args))
    except TrainingInterrupted as e:
        _stderr(f"minis2s: {e}")
        return 128 + e.signum
    except TrainingDiverged as e:
        _stderr(f"minis2s: error: {e}")
        return 1
    except EXPECTED_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        _stderr(f"minis2s: error: {msg}")
        return 2
    except OSError as e:  # a full disk, a read-only folder: what and where, in one line
        where = f": {e.filename}" if e.filename else ""
        _stderr(f"minis2s: error: {e.strerror or e}{where} (files are written atomically: what was there before "
                "is intact; a run resumes from its latest checkpoint)")
        return 1
    except KeyboardInterrupt:
        _stderr("minis2s: interrupted (the latest checkpoint is intact; --resume continues)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
