"""The ``minis2s`` command end to end, as a user runs it: ``python -m minis2s`` in a subprocess.

A tiny G2P model is trained inside the test (the first 300 training pairs, hidden 16, one epoch), then
evaluated and used for prediction (words on the command line, ``--input FILE``, beam search with
n-best lists). Output format: one ``word<TAB>PH O N`` line per word (per hypothesis with
``--nbest``). Every bad input -- characters outside the alphabet, an empty word, a missing or
corrupt model folder, a checkpoint of the wrong shape, an existing run without --resume, --resume
without a run -- exits non-zero with one line ``minis2s: error: ...`` on stderr, never a traceback.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from minis2s.g2p import G2P, PHONEMES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^(?P<word>[^\t]+)\t(?P<phonemes>[A-Z]+( [A-Z]+)*)?$")


def minis2s(*args, cwd, timeout=300):
    """Run ``python -m minis2s ARGS`` in ``cwd``; returns the CompletedProcess (text)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [REPO] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    return subprocess.run([sys.executable, "-m", "minis2s", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def assert_ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr


def assert_clean_error(p, *fragments, last_line_only=False):
    """Non-zero exit, a one-line ``minis2s: error: ...`` on stderr that names the problem."""
    assert p.returncode != 0, f"expected a failure\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    lines = p.stderr.strip().splitlines()
    if not last_line_only:
        assert len(lines) == 1, f"expected one line on stderr, got:\n{p.stderr}"
    assert lines[-1].startswith("minis2s: error: "), p.stderr
    for f in fragments:
        assert f in lines[-1], f"{f!r} not in {lines[-1]!r}"
    return lines[-1]


def parse_lines(stdout):
    out = []
    for line in stdout.splitlines():
        m = LINE.match(line)
        assert m, f"not a 'word<TAB>PH O N' line: {line!r}"
        phonemes = (m["phonemes"] or "").split()
        assert set(phonemes) <= set(PHONEMES), line
        out.append((m["word"], phonemes))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """cwd with a run folder ``tmp`` trained by the CLI; (cwd, completed process)."""
    cwd = tmp_path_factory.mktemp("cli")
    p = minis2s("g2p", "train", "--train-limit", "300", "--hidden", "16", "--layers", "1", "--embedding", "8",
                "--epochs", "1", "--out", "tmp", "--quiet", cwd=cwd)
    assert_ok(p)
    return cwd, p


@pytest.fixture
def model_copy(trained, tmp_path):
    """A copy of the trained best/ folder the test may damage."""
    cwd, _ = trained
    dst = tmp_path / "m"
    shutil.copytree(cwd / "tmp" / "best", dst)
    return dst


# ---- the happy path ------------------------------------------------------------------------------
def test_train_writes_a_run_folder(trained):
    cwd, p = trained
    run = cwd / "tmp"
    assert {"config.json", "metrics.jsonl", "curves.png", "best", "last", "checkpoints"} <= set(os.listdir(run))
    assert sorted(os.listdir(run / "best")) == ["model.json", "model.safetensors"]
    assert sorted(os.listdir(run / "last")) == ["model.json", "model.safetensors"]
    assert os.path.isfile(run / "checkpoints" / "index.json")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["settings"]["train_limit"] == 300 and cfg["data"]["train_pairs"] == 300
    assert cfg["task"]["model"]["hidden"] == 16 and cfg["train"]["epochs"] == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert re.search(r"best dev WER \d+\.\d\d%", p.stdout), p.stdout
    assert "training pairs" in p.stderr and "batch/s" not in p.stderr  # --quiet: a summary, no progress bar


def test_eval_prints_wer_and_per(trained):
    cwd, _ = trained
    p = minis2s("g2p", "eval", "--model", "tmp/best", "--split", "dev", cwd=cwd)
    assert_ok(p)
    m = re.search(r"dev: WER (\d+\.\d\d)%\s+PER (\d+\.\d\d)%\s+\(5857 words, greedy", p.stdout)
    assert m, p.stdout
    assert 0 <= float(m[1]) <= 100 and float(m[2]) >= 0


def test_predict_words_on_the_command_line(trained):
    cwd, _ = trained
    p = minis2s("g2p", "predict", "--model", "tmp/best", "hello", "world", cwd=cwd)
    assert_ok(p)
    got = parse_lines(p.stdout)
    assert [w for w, _ in got] == ["hello", "world"]
    assert [ph for _, ph in got] == G2P(str(cwd / "tmp" / "best"))(["hello", "world"])  # same as the Python API


def test_predict_input_file(trained, tmp_path):
    cwd, _ = trained
    f = tmp_path / "words.txt"
    f.write_text("cat\n\n  dog  \nelephant\n")
    p = minis2s("g2p", "predict", "--model", "tmp/best", "--input", str(f), cwd=cwd)
    assert_ok(p)
    assert [w for w, _ in parse_lines(p.stdout)] == ["cat", "dog", "elephant"]


def test_predict_beam_nbest(trained):
    cwd, _ = trained
    p = minis2s("g2p", "predict", "--model", "tmp/best", "--beam", "3", "--nbest", "2", "hello", "world", cwd=cwd)
    assert_ok(p)
    got = parse_lines(p.stdout)
    assert [w for w, _ in got] == ["hello", "hello", "world", "world"]
    assert got[0][1] != got[1][1] and got[2][1] != got[3][1]  # two different hypotheses each
    hyps = G2P(str(cwd / "tmp" / "best")).predict(["hello"], beam=3, nbest=2)[0]
    assert [ph for ph, _ in hyps] == [got[0][1], got[1][1]]
    assert hyps[0][1] >= hyps[1][1]  # best first


def test_demo_reverse_runs(tmp_path):
    p = minis2s("demo", "reverse", "--max-steps", "3", "--hidden", "8", "--quiet", "--out", "d", cwd=tmp_path)
    assert_ok(p)
    m = re.search(r"held-out exact-sequence accuracy: (\d+\.\d\d)%", p.stdout)
    assert m and 0 <= float(m[1]) <= 100
    assert os.path.isfile(tmp_path / "d" / "checkpoints" / "index.json")
    assert os.path.isfile(tmp_path / "d" / "last" / "model.json")  # RUN/last: the model of the final step


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="console_scripts") if ep.name == "minis2s"]
    assert eps and eps[0].value == "minis2s.cli:main"


# ---- bad input: one clean line, non-zero exit ----------------------------------------------------
@pytest.mark.parametrize("word,fragment", [
    ("hello1", "outside the model's alphabet"), ("héllo", "outside the model's alphabet"),
    ("", "empty"), ("two words", "outside the model's alphabet"),
])
def test_predict_bad_words(trained, word, fragment):
    """A bad word gets one message naming it and its position; the good ones still get their
    answers, in order; the exit status says that something failed."""
    cwd, _ = trained
    p = minis2s("g2p", "predict", "--model", "tmp/best", "fine", word, "cat", cwd=cwd)
    assert_clean_error(p, fragment, "argument 2:")
    assert [w for w, _ in parse_lines(p.stdout)] == ["fine", "cat"]


def test_predict_bad_word_in_an_input_file(trained, tmp_path):
    cwd, _ = trained
    f = tmp_path / "w.txt"
    f.write_text("\ufefffine\nbad!\nhello\n", encoding="utf-8")  # a BOM, then a bad line 2 of 3
    p = minis2s("g2p", "predict", "--model", "tmp/best", "--input", str(f), cwd=cwd)
    assert_clean_error(p, "line 2:", "'bad!'")
    assert [w for w, _ in parse_lines(p.stdout)] == ["fine", "hello"]


def test_predict_input_from_a_pipe_a_directory_and_an_empty_file(trained, tmp_path):
    cwd, _ = trained
    piped = subprocess.run(["sh", "-c", (f"printf 'cat\\n' | {sys.executable} -m minis2s g2p predict --model tmp/best "
                                         "--input /dev/stdin")], cwd=cwd, capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PYTHONPATH=REPO), check=False)
    assert piped.returncode == 0 and [w for w, _ in parse_lines(piped.stdout)] == ["cat"], piped.stderr
    assert_clean_error(minis2s("g2p", "predict", "--model", "tmp/best", "--input", str(tmp_path), cwd=cwd),
                       "is a directory")
    (tmp_path / "empty.txt").write_text("\n\n")
    assert_clean_error(minis2s("g2p", "predict", "--model", "tmp/best", "--input", str(tmp_path / "empty.txt"),
                               cwd=cwd), "holds no words")


DAMAGES = [
    ("missing", "does not exist"),
    ("garbage-weights", "not a valid safetensors file"),
    ("truncated-weights", "not a valid safetensors file"),
    ("bad-json", "not valid JSON"),
    ("json-not-an-object", "not an object"),
    ("no-weights", "has no model.safetensors"),
    ("wrong-hidden", "model.json's sizes give"),
    ("wrong-vocab", "model.json's sizes give"),
]


def damage_model(m, tmp_path, damage):
    """Damage the model folder ``m`` one way; returns the folder to pass to --model."""
    if damage == "missing":
        return tmp_path / "nowhere"
    if damage == "garbage-weights":
        (m / "model.safetensors").write_bytes(b"\x00garbage" * 40)
    elif damage == "truncated-weights":
        data = (m / "model.safetensors").read_bytes()
        (m / "model.safetensors").write_bytes(data[: len(data) - 100])
    elif damage == "bad-json":
        (m / "model.json").write_text("{oops")
    elif damage == "json-not-an-object":
        (m / "model.json").write_text('"g2p"')
    elif damage == "no-weights":
        os.remove(m / "model.safetensors")
    elif damage in ("wrong-hidden", "wrong-vocab"):  # a checkpoint of the wrong shape
        meta = json.loads((m / "model.json").read_text())
        if damage == "wrong-hidden":
            meta["model"]["hidden"] = 32
        else:
            meta["vocab"]["trg"] = meta["vocab"]["trg"][:-3]
        (m / "model.json").write_text(json.dumps(meta))
        assert minis2s("seal", str(m), cwd=tmp_path).returncode == 0  # edited by hand and vouched for
    return m


@pytest.mark.parametrize("damage,fragment", DAMAGES, ids=[d for d, _ in DAMAGES])
def test_predict_refuses_bad_model_folders(model_copy, tmp_path, damage, fragment):
    m = damage_model(model_copy, tmp_path, damage)
    assert_clean_error(minis2s("g2p", "predict", "--model", str(m), "hello", cwd=tmp_path), fragment)


@pytest.mark.parametrize("damage,fragment", [DAMAGES[0], DAMAGES[1], DAMAGES[6]], ids=["missing", "garbage", "wrong-hidden"])
def test_eval_refuses_bad_model_folders(model_copy, tmp_path, damage, fragment):
    m = damage_model(model_copy, tmp_path, damage)
    assert_clean_error(minis2s("g2p", "eval", "--model", str(m), cwd=tmp_path), fragment)


@pytest.mark.parametrize("args,fragment", [
    (["--beam", "0"], "beam"), (["--beam", "2", "--nbest", "3"], "cannot exceed the beam width"),
    (["--input", "no-such-file.txt"], "does not exist"), ([], "give words"),
])
def test_predict_bad_options(trained, args, fragment):
    cwd, _ = trained
    words = [] if args == [] or args[0] == "--input" else ["hello"]
    assert_clean_error(minis2s("g2p", "predict", "--model", "tmp/best", *args, *words, cwd=cwd), fragment)


def test_train_refuses_an_existing_run_without_resume(trained):
    cwd, _ = trained
    before = {f: (cwd / "tmp" / f).read_bytes() for f in ("config.json", "metrics.jsonl")}
    p = minis2s("g2p", "train", "--train-limit", "300", "--hidden", "16", "--layers", "1", "--embedding", "8",
                "--epochs", "1", "--out", "tmp", "--quiet", cwd=cwd)
    assert_clean_error(p, "already holds a run", "--resume")
    assert {f: (cwd / "tmp" / f).read_bytes() for f in before} == before  # untouched


@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_resume_refuses_a_folder_without_a_run(tmp_path, folder):
    if folder == "empty":
        (tmp_path / "run").mkdir()
    p = minis2s("g2p", "train", "--out", "run", "--resume", "--quiet", cwd=tmp_path)
    assert_clean_error(p, "cannot resume", "holds no run" if folder == "empty" else "does not exist")


def test_resume_refuses_a_run_without_a_checkpoint(trained, tmp_path):
    cwd, _ = trained
    shutil.copytree(cwd / "tmp", tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    p = minis2s("g2p", "train", "--out", "run", "--resume", "--quiet", cwd=tmp_path)
    # the run (its saved configuration) is announced first; the refusal is the last line
    assert_clean_error(p, "no checkpoint to resume from", last_line_only=True)


def test_resume_with_set_and_restart_lr_extends_and_records_the_change(trained, tmp_path):
    """--set changes a saved setting (here: one more epoch, cosine) and RUN/changes.jsonl records
    it (config.json stays as written); --restart-lr begins the new cycle at the lr given, and the
    extra epoch trains with it."""
    cwd, _ = trained
    shutil.copytree(cwd / "tmp", tmp_path / "run")
    before = (tmp_path / "run" / "config.json").read_bytes()
    p = minis2s("g2p", "train", "--out", "run", "--resume", "--quiet", "--set", "epochs=2",
                "--set", "lr_schedule=cosine", "--set", "lr=0.002", "--restart-lr", cwd=tmp_path)
    assert_ok(p)
    assert "changed: epochs=2, lr=0.002, lr_schedule=cosine" in p.stderr, p.stderr
    assert "learning rate restarted at 0.002 (cosine schedule" in p.stderr, p.stderr
    assert (tmp_path / "run" / "config.json").read_bytes() == before  # written once, never changed
    cfg = json.loads(before)
    assert cfg["train"]["epochs"] == 1 and cfg["train"]["lr_schedule"] == "plateau" and cfg["train"]["lr"] == 1e-3
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    changes = [json.loads(line) for line in (tmp_path / "run" / "changes.jsonl").read_text().splitlines()]
    assert changes == [{"step": history[0]["step"], "epoch": 1,
                        "set": {"epochs": 2, "lr_schedule": "cosine", "lr": 0.002}, "restart_lr": True}]
    from minis2s.training import RunFolder

    in_force = RunFolder.open(tmp_path / "run").train_settings()  # config.json with the changes applied
    assert (in_force["epochs"], in_force["lr_schedule"], in_force["lr"]) == (2, "cosine", 0.002)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["lr"] == 1e-3 and history[1]["lr"] == pytest.approx(1e-5)  # annealed to min_lr


@pytest.mark.parametrize("args,fragment", [
    (["--resume", "--set", "seed=4"], "KEY one of"), (["--resume", "--set", "epochs"], "KEY=VALUE"),
    (["--resume", "--set", "epochs=0"], "epochs must be >= 1"),
    (["--resume", "--set", "lr_schedule=linear"], "lr_schedule must be one of"),
    (["--set", "epochs=3"], "need --resume"), (["--restart-lr"], "need --resume"),
])
def test_resume_settings_are_checked_before_anything_is_written(trained, tmp_path, args, fragment):
    cwd, _ = trained
    shutil.copytree(cwd / "tmp", tmp_path / "run")
    before = (tmp_path / "run" / "config.json").read_bytes()
    p = minis2s("g2p", "train", "--out", "run", "--quiet", *args, cwd=tmp_path)
    assert_clean_error(p, fragment, last_line_only=True)
    assert (tmp_path / "run" / "config.json").read_bytes() == before
    assert not (tmp_path / "run" / "changes.jsonl").exists()  # no change recorded


def test_shipped_models_are_reachable_by_name(tmp_path):
    """--model seq2seq names the shipped seq2seq (LSTM encoder-decoder) model from any folder; an existing
    folder of that name wins over the shipped one; an unknown name is a clean error."""
    from minis2s.g2p import (
        DEFAULT_MODEL,
        PRETRAINED_ENSEMBLES,
        PRETRAINED_MODELS,
        model_folders,
        resolve_model,
    )

    assert DEFAULT_MODEL == "ensemble"  # the default decodes with several shipped models at once
    assert model_folders(None) == [PRETRAINED_MODELS[name] for name in PRETRAINED_ENSEMBLES["ensemble"]]
    assert PRETRAINED_ENSEMBLES["ensemble"] == ("seq2seq", "smoothed", "attention", "smoothed-seed2", "distilled-ls",
                                                "distilled-t2")  # README: why these six
    assert resolve_model("seq2seq") == PRETRAINED_MODELS["seq2seq"]
    p = minis2s("g2p", "predict", "--model", "seq2seq", "cat", cwd=tmp_path)
    assert_ok(p)
    assert p.stdout == "cat\tK AE T\n"
    (tmp_path / "seq2seq").mkdir()
    assert resolve_model(str(tmp_path / "seq2seq")) == str(tmp_path / "seq2seq")
    assert_clean_error(minis2s("g2p", "predict", "--model", "seq2seq", "cat", cwd=tmp_path), "has no model.json")
    assert_clean_error(minis2s("g2p", "predict", "--model", "transformer", "cat", cwd=tmp_path), "does not exist")


def test_the_shipped_attention_model_pronounces_and_draws(tmp_path):
    p = minis2s("g2p", "predict", "cat", "hello", "--model", "attention", "--plot", "hello.png", cwd=tmp_path)
    assert_clean_error(p, "--plot draws the attention of one word")
    p = minis2s("g2p", "predict", "hello", "--model", "attention", "--plot", "hello.png", cwd=tmp_path)
    assert_ok(p)
    assert p.stdout == "hello\tHH EH L OW\n"
    assert (tmp_path / "hello.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_negative_alpha_is_refused_even_for_greedy_decoding(tmp_path):
    assert_clean_error(minis2s("g2p", "predict", "cat", "--alpha", "-1", cwd=tmp_path), "alpha must be")


def test_set_on_a_run_without_a_checkpoint_is_refused_before_config_json_changes(trained, tmp_path):
    cwd, _ = trained
    shutil.copytree(cwd / "tmp", tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    before = (tmp_path / "run" / "config.json").read_bytes()
    p = minis2s("g2p", "train", "--out", "run", "--resume", "--quiet", "--set", "epochs=3", cwd=tmp_path)
    assert_clean_error(p, "no checkpoint to resume from", last_line_only=True)
    assert (tmp_path / "run" / "config.json").read_bytes() == before
    assert not (tmp_path / "run" / "changes.jsonl").exists()  # no change recorded


# ---- --help shows every default -------------------------------------------------------------------
def shown_default(help_text: str, flag: str) -> str:
    """The "(default: X)" that ``--help`` prints for ``flag`` (wrapped lines joined)."""
    text = " ".join(help_text.split())
    m = re.search(re.escape(flag) + r" (?:(?!--).)*?\(default: ([^)]*)\)", text)
    assert m, f"no default shown for {flag} in:\n{help_text}"
    return m[1]


def test_help_shows_the_presets_defaults(tmp_path):
    """--help prints the default a command really starts from: g2p train's 40 epochs and the
    demo's 15 (presets over TrainConfig's 20), g2p eval's dev split."""
    g2p_train = minis2s("g2p", "train", "--help", cwd=tmp_path)
    assert_ok(g2p_train)
    assert shown_default(g2p_train.stdout, "--epochs") == "40"
    assert shown_default(g2p_train.stdout, "--lr-threshold") == "0.01"
    demo = minis2s("demo", "--help", cwd=tmp_path)
    assert_ok(demo)
    assert shown_default(demo.stdout, "--epochs") == "15"
    g2p_eval = minis2s("g2p", "eval", "--help", cwd=tmp_path)
    assert_ok(g2p_eval)
    assert shown_default(g2p_eval.stdout, "--split") == "dev"
    assert shown_default(g2p_eval.stdout, "--beam") == "1"


def test_every_flag_with_a_value_shows_its_default_in_help():
    """Every command's --help states the default of each flag that has one (flags added later,
    from a settings class or by hand, included): None, an empty list and on/off switches aside."""
    import argparse

    from minis2s.cli import build_parser

    def commands(parser, name):
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from commands(sub, f"{name} {sub_name}")

    missing = []
    for name, parser in commands(build_parser(), "minis2s"):
        formatter = parser._get_formatter()  # what this command's --help formats each flag with
        for a in parser._actions:
            switch = a.nargs == 0 and not isinstance(a, argparse.BooleanOptionalAction)  # --resume: off
            if not a.option_strings or a.required or switch or a.default in (None, [], argparse.SUPPRESS):
                continue
            if not a.help or "default" not in formatter._expand_help(a):
                missing.append(f"{name} {a.option_strings[0]}")
    assert not missing, f"--help shows no default for: {', '.join(missing)}"
