"""Your own data, end to end: ``minis2s train / eval / predict`` and ``load_model``.

- The CLI as a user runs it (a subprocess): ``data example dates``, ``train`` on its TSV files,
  ``eval`` (every metric, ``--json``), ``predict`` from a file and from stdin — exactly one
  output line per input line, an input with unseen symbols warned about on stderr and still
  answered, ``--nbest`` as tab-separated hypotheses and scores.
- ``load_model`` rebuilds every architecture with every tokenizer (and a shared vocabulary)
  from the folder alone: the reloaded model's translations equal the trained model's, in input
  order, and the folder holds the sentencepiece model it needs.
- The model the CLI trains (3 epochs of 3,000 dates) really learns: dev exact match > 0.5, a
  floor, not a benchmark (the README's figure is measured by the README's own commands).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minis2s import DataConfig, ModelConfig, Seq2SeqTask, TrainConfig, load_model, manual_seed, train
from minis2s.data.examples import dates
from minis2s.task import evaluate_translator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def minis2s(*args, cwd, stdin=None, timeout=600):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [REPO] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    return subprocess.run([sys.executable, "-m", "minis2s", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr
    return p


def refused(p, *fragments):
    assert p.returncode == 2, f"exit {p.returncode}\n{p.stderr}"
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("minis2s: error: ") and "Traceback" not in p.stderr, p.stderr
    for f in fragments:
        assert f in last, f"{f!r} not in {last!r}"


@pytest.fixture(scope="module")
def dates_run(tmp_path_factory):
    """dates data written by the CLI, a small attention model trained on it by the CLI."""
    d = tmp_path_factory.mktemp("dates")
    ok(minis2s("data", "example", "dates", "--out", "data", "--train-size", "3000", "--dev-size", "200",
               "--test-size", "300", cwd=d))
    p = ok(minis2s("train", "--train", "data/dates-train.tsv", "--dev", "data/dates-dev.tsv", "--out", "run",
                   "--arch", "attention", "--hidden", "64", "--layers", "1", "--embedding", "16", "--epochs", "3", "--lr", "3e-3",
                   "--batch-size", "32", "--quiet", cwd=d))
    return d, p


def test_train_writes_a_complete_run_and_reports_the_best_epoch(dates_run):
    d, p = dates_run
    assert "best dev exact match" in p.stdout and "run/best" in p.stdout
    run = d / "run"
    assert {"config.json", "metrics.jsonl", "curves.png", "best", "last", "checkpoints"} <= set(os.listdir(run))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["settings"]["tokens"] == "char" and cfg["data"]["train_pairs"] == 3000
    assert cfg["data"]["train_file"] == str(d / "data" / "dates-train.tsv")
    assert cfg["task"]["model"]["arch"] == "attention" and cfg["train"]["epochs"] == 3
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["dev_exact"] > 0.5  # it learns (3 epochs of 3,000 pairs)


def test_eval_prints_every_metric_and_json(dates_run):
    d, _ = dates_run
    p = ok(minis2s("eval", "--model", "run/best", "--data", "data/dates-test.tsv", cwd=d))
    for name in ("exact", "wer", "cer", "bleu", "chrf"):
        assert f"{name} " in p.stdout
    j = json.loads(ok(minis2s("eval", "--model", "run/best", "--data", "data/dates-test.tsv", "--json",
                              "--metric", "exact", "--metric", "cer", cwd=d)).stdout)
    assert set(j) == {"exact", "cer", "examples", "pairs", "beam", "unknown_sources"}
    assert j["examples"] == j["pairs"] == 300 and 0.5 < j["exact"] <= 1 and 0 <= j["cer"] < 0.2
    # the same figure through the library
    m = evaluate_translator(load_model(d / "run" / "best"), d / "data" / "dates-test.tsv")
    assert m["exact"] == j["exact"] and m["cer"] == j["cer"]


def test_predict_answers_every_input_line_in_order(dates_run):
    d, _ = dates_run
    lines = ["feb 10, 1924", "", "10 march 2001", "ünïcode ✓ 12", "2/10/1924", "  ", "jan 1 2000\r"]
    (d / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = ok(minis2s("predict", "--model", "run/best", "--input", "in.txt", cwd=d))
    out = p.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    assert "line 4" in p.stderr and "read as <unk>" in p.stderr  # ü, ï, ✓ were never seen
    assert "line 1:" not in p.stderr
    from_stdin = ok(minis2s("predict", "--model", "run/best", cwd=d, stdin="\n".join(lines) + "\n"))
    assert from_stdin.stdout == p.stdout
    # a file without a final newline: still one line out per line in
    (d / "in2.txt").write_text("feb 10, 1924\n10 march 2001", encoding="utf-8")
    assert len(ok(minis2s("predict", "--model", "run/best", "--input", "in2.txt", cwd=d)).stdout.splitlines()) == 2


def test_predict_nbest_prints_hypotheses_with_scores(dates_run):
    d, _ = dates_run
    p = ok(minis2s("predict", "--model", "run/best", "--beam", "4", "--nbest", "3", cwd=d,
                   stdin="feb 10, 1924\n10 march 2001\n"))
    rows = p.stdout.splitlines()
    assert len(rows) == 2
    for row in rows:
        fields = row.split("\t")
        assert len(fields) == 6
        scores = [float(s) for s in fields[1::2]]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)


def test_bad_input_is_one_line_naming_the_file_and_line(tmp_path, dates_run):
    d, _ = dates_run
    bad = tmp_path / "bad.tsv"
    bad.write_text("".join(f"a{i}\tb{i}\n" for i in range(16)) + "no tab here\n", encoding="utf-8")
    refused(minis2s("train", "--train", str(bad), "--dev", str(bad), "--out", str(tmp_path / "r"), cwd=d),
            "bad.tsv: line 17: expected 2 tab-separated fields, got 1")
    assert not os.path.exists(tmp_path / "r") or not os.listdir(tmp_path / "r")
    refused(minis2s("eval", "--model", "run/best", "--data", str(bad), cwd=d), "line 17")
    refused(minis2s("train", "--train", "missing.tsv", "--dev", str(bad), "--out", str(tmp_path / "r2"), cwd=d),
            "missing.tsv", "does not exist")
    refused(minis2s("predict", "--model", "nowhere", cwd=d, stdin="x\n"), "nowhere")
    refused(minis2s("train", "--train", str(bad), "--out", str(tmp_path / "r3"), cwd=d), "--dev")
    refused(minis2s("train", "--resume", "--out", "run", "--train", "data/dates-train.tsv", cwd=d),
            "--resume reads the run's own")


def test_resume_from_the_cli_uses_the_runs_own_files_and_settings(dates_run, tmp_path):
    d, _ = dates_run
    p = ok(minis2s("train", "--resume", "--out", "run", "--quiet", cwd=d))
    assert "nothing to do" in p.stderr  # the run ended after its 3 epochs
    refused(minis2s("train", "--resume", "--out", "run", "--hidden", "32", cwd=d), "--hidden cannot be given")
    refused(minis2s("train", "--resume", "--out", "run", "--set", "batch_size=8", cwd=d), "--set 'batch_size=8'")
    refused(minis2s("train", "--resume", "--out", "run", "--set", "epochs=0", cwd=d), "epochs must be >= 1")


# ---- load_model for every architecture and tokenizer ----------------------------------------
PAIRS = dates(1000, seed=3)
DEV = [(s, t) for s, t in dates(40, seed=4)]


@pytest.mark.parametrize("arch", ["seq2seq", "attention"])
# Subword sizes: at least 256 byte pieces + one per character seen + 4 (byte fallback makes every
# string encodable), at most what 1,000 dates hold (ISO targets alone hold fewer than 300).
@pytest.mark.parametrize("tokens", [dict(tokens="char"), dict(tokens="space"),
                                    dict(src_tokens="bpe", trg_tokens="char", vocab_size=300),
                                    dict(src_tokens="unigram", trg_tokens="space", vocab_size=300),
                                    dict(tokens="bpe", vocab_size=300, shared_vocab=True),
                                    dict(src_tokens="space", trg_tokens="char", min_freq=2)],
                         ids=["char", "space", "bpe", "unigram", "bpe-shared", "space-char-minfreq"])
def test_load_model_round_trip(tmp_path, arch, tokens):
    task = Seq2SeqTask(PAIRS, DEV, model=ModelConfig(arch=arch, hidden=16, layers=1, embedding=8),
                       data=DataConfig(**tokens))
    manual_seed(1)
    model = task.build_model()
    train(task, model, TrainConfig(epochs=1, batch_size=64), tmp_path / "run", log=lambda m: None)
    folder = tmp_path / "run" / "last"
    expected_files = {"model.json", "model.safetensors"} | set(task.files())
    assert set(os.listdir(folder)) == expected_files
    if "bpe" in tokens.values() or "unigram" in tokens.values():
        assert task.files()  # the sentencepiece model travels with the weights
    loaded = load_model(folder)
    for k, v in model.state_dict().items():
        assert np.array_equal(loaded.model.state_dict()[k], v), k
    inputs = [s for s, _ in DEV[:7]] + ["1 jan 1999"]
    assert loaded.translate(inputs) == task.translator(model).translate(inputs)
    assert loaded.translate(inputs[::-1]) == loaded.translate(inputs)[::-1]  # order, never bucketing
    assert loaded.src.vocab == task.src.vocab and loaded.trg.vocab == task.trg.vocab
    # the detokenised targets of the training side round-trip through the target codec
    for _, t in PAIRS[:50]:
        ids, unknown = loaded.trg.encode(t)
        if not unknown:
            assert loaded.trg.decode(ids) == t


def test_unknown_symbols_are_counted_and_reported_never_dropped():
    task = Seq2SeqTask(PAIRS, DEV, model=ModelConfig(hidden=8, layers=1, embedding=4), data=DataConfig())
    translator = task.translator(task.build_model())
    seen = []
    out = translator.translate(["feb 10, 1924", "ñ 10 1924", ""], on_unknown=lambda i, toks: seen.append((i, toks)))
    assert len(out) == 3 and seen == [(1, ["ñ"])]
    logs = []
    Seq2SeqTask(PAIRS, DEV, model=ModelConfig(hidden=8, layers=1, embedding=4),
                data=DataConfig(tokens="space", min_freq=3), log=logs.append)
    assert logs and "training tokens are <unk>" in logs[0]


def test_a_float64_model_trains_saves_and_reloads_as_float64(tmp_path):
    task = Seq2SeqTask(PAIRS[:128], DEV, model=ModelConfig(hidden=8, layers=1, embedding=4, dtype="float64"))
    manual_seed(2)
    model = task.build_model()
    assert all(p.data.dtype == np.float64 for p in model.parameters())
    train(task, model, TrainConfig(epochs=1, batch_size=64), tmp_path / "run", log=lambda m: None)
    loaded = load_model(tmp_path / "run" / "last")
    assert loaded.config.dtype == "float64"
    for k, v in model.state_dict().items():
        w = loaded.model.state_dict()[k]
        assert w.dtype == np.float64 and np.array_equal(w, v), k


def test_translate_refuses_one_string_for_a_list():
    task = Seq2SeqTask(PAIRS[:64], DEV, model=ModelConfig(hidden=8, layers=1, embedding=4))
    translator = task.translator(task.build_model())
    with pytest.raises(TypeError, match="not one str"):
        translator.translate("feb 10, 1924")  # would translate each character as an input
    assert len(translator.translate(s for s, _ in DEV[:3])) == 3  # any iterable of str
