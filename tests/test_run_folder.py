"""The run folder's rules (minis2s/training/run_folder.py), each one a test.

A run is never lost: a second run into a folder is refused (API and every command) and best/
stays byte-identical; a run killed before its first step resumes from the step-0 checkpoint;
SIGINT/SIGTERM write a checkpoint; checkpoints are pruned by step number from the run's own
index; a kill between the two renames of a folder swap, or during a save, leaves a folder that
resumes; ``--resume --max-steps N`` at step N does nothing and says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal

import numpy as np
import pytest

import minis2s.training.trainer as train_mod
from minis2s import atomic, safetensors
from minis2s.cli import main
from minis2s.demo import DemoConfig, DigitTask
from minis2s.optim import Adam
from minis2s.random import manual_seed
from minis2s.training import RunExistsError, RunFolder, TrainConfig, TrainingInterrupted, train
from minis2s.training.run_folder import NotARunError
from minis2s.translator import load_model

DEMO = DemoConfig(task="reverse", train_size=192, dev_size=16, test_size=16, hidden=8, embedding=4)
CFG = dict(epochs=3, batch_size=64, checkpoint_every=2, patience=5, target=None)  # 3 batches an epoch, 9 steps


def run(d, *, resume=False, log=None, **overrides):
    task = DigitTask(DEMO)
    manual_seed(0)
    model = task.build_model()
    state = train(task, model, TrainConfig(**{**CFG, **overrides}), d, resume=resume, log=log or (lambda m: None))
    return model, state


def digest(folder) -> dict:
    return {f: hashlib.sha256(open(os.path.join(folder, f), "rb").read()).hexdigest() for f in sorted(os.listdir(folder))}


def weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("straight") / "run")
    model, state = run(d)
    assert state.step == 9
    return d, weights(model)


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


# ---- a used folder is refused ---------------------------------------------------------------
def test_a_second_run_is_refused_and_best_is_untouched(straight, tmp_path):
    d, _ = straight
    before = digest(os.path.join(d, "best"))
    with pytest.raises(RunExistsError, match="already holds a run: resume it .* or choose another folder"):
        run(d)
    assert digest(os.path.join(d, "best")) == before


def test_a_non_empty_folder_without_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunExistsError, match="not empty and holds no run"):
        run(str(tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("argv", [
    ["demo", "reverse", "--train-size", "64", "--dev-size", "8", "--test-size", "8", "--hidden", "8", "--epochs", "1",
     "--quiet"],
    ["g2p", "train", "--train-limit", "64", "--hidden", "8", "--layers", "1", "--embedding", "4", "--epochs", "1",
     "--quiet"],
    ["train", "--train", "TRAIN", "--dev", "TRAIN", "--hidden", "8", "--layers", "1", "--embedding", "4", "--epochs",
     "1", "--quiet"],
], ids=["demo", "g2p-train", "train"])
def test_every_command_refuses_a_folder_that_holds_a_run(tmp_path, capsys, argv):
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{i}\t{str(i)[::-1]}\n" for i in range(100, 164)))
    argv = [str(data) if a == "TRAIN" else a for a in argv]
    out = str(tmp_path / "run")
    assert main([*argv, "--out", out]) == 0
    before = digest(os.path.join(out, "best"))
    capsys.readouterr()
    assert main([*argv, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--out" in err and "Traceback" not in err
    assert digest(os.path.join(out, "best")) == before


# ---- killed early, interrupted, resumed -------------------------------------------------------
def test_a_run_killed_before_its_first_step_resumes_from_step_0(straight, tmp_path, monkeypatch):
    d = str(tmp_path / "run")

    def killed(*a, **k):
        raise SystemExit("killed")

    monkeypatch.setattr(train_mod, "loss_and_grad", killed)
    with pytest.raises(SystemExit):
        run(d)
    monkeypatch.undo()
    assert RunFolder.open(d).index() == [{"step": 0, "dir": "step-00000000"}]
    model, state = run(d, resume=True)
    assert state.step == 9
    assert_same_weights(weights(model), straight[1])


@pytest.mark.parametrize("sig,at", [(signal.SIGINT, 5), (signal.SIGTERM, 5), (signal.SIGINT, 3)],
                         ids=["SIGINT-mid-epoch", "SIGTERM-mid-epoch", "SIGINT-at-the-epochs-last-step"])
def test_a_signal_writes_a_checkpoint_and_the_run_resumes_bit_identically(straight, tmp_path, monkeypatch, sig, at):
    """Step 5 is no checkpoint step (checkpoint_every 2); step 3 ends epoch 1, whose evaluation
    the signal skips: the resumed run evaluates it first."""
    d = str(tmp_path / "run")
    real, calls = train_mod.loss_and_grad, [0]
    before = signal.getsignal(sig)  # not always the default: a shell's background job ignores SIGINT

    def signalled(*a, **k):
        calls[0] += 1
        if calls[0] == at:
            signal.raise_signal(sig)  # to this thread (os.kill: maybe a BLAS thread, late)
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "loss_and_grad", signalled)
    logs = []
    with pytest.raises(TrainingInterrupted, match=rf"interrupted by {sig.name} at step {at}: checkpoint written to "
                                                  rf".*step-0000000{at}; --resume") as e:
        run(d, log=logs.append)
    assert e.value.signum == sig
    monkeypatch.undo()
    assert signal.getsignal(sig) == before  # handlers restored
    assert RunFolder.open(d).index()[-1]["step"] == at and os.path.isdir(os.path.join(d, "last"))
    model, state = run(d, resume=True, max_steps=at)  # at max_steps, but an evaluation is pending
    assert len(state.history) == at // 3
    model, state = run(d, resume=True)
    assert state.step == 9
    assert_same_weights(weights(model), straight[1])


def test_the_cli_exits_130_on_sigint_after_the_checkpoint(tmp_path, monkeypatch, capsys):
    real, calls = train_mod.loss_and_grad, [0]

    def signalled(*a, **k):
        calls[0] += 1
        if calls[0] == 3:
            signal.raise_signal(signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "loss_and_grad", signalled)
    out = str(tmp_path / "run")
    argv = ["demo", "reverse", "--train-size", "256", "--dev-size", "8", "--test-size", "8", "--hidden", "8",
            "--quiet", "--out", out]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted by SIGINT at step 3: checkpoint written to" in err and "Traceback" not in err
    monkeypatch.undo()
    assert main([*argv[:2], "--resume", "--max-steps", "6", "--quiet", "--out", out]) == 0
    assert RunFolder.open(out).index()[-1]["step"] == 6


# ---- the index --------------------------------------------------------------------------------
def test_checkpoints_are_pruned_by_step_number_not_by_folder_name(tmp_path):
    task = DigitTask(DEMO)
    model = task.build_model()
    opt = Adam(model.parameters())
    rf = RunFolder.create(tmp_path / "run", {"train": {}})
    for step in (5, 99_999_999, 100_000_000):  # by name, "step-100000000" sorts before "step-99999999"
        rf.save_checkpoint(model, opt, {"step": step}, keep=2)
    assert [c["step"] for c in rf.index()] == [99_999_999, 100_000_000]
    assert sorted(os.listdir(rf.checkpoints)) == ["index.json", "step-100000000", "step-99999999"]
    assert rf.latest().endswith("step-100000000")


def test_a_kill_between_index_and_pruning_leaves_no_unlisted_checkpoint(tmp_path, monkeypatch):
    task = DigitTask(DEMO)
    model = task.build_model()
    opt = Adam(model.parameters())
    rf = RunFolder.create(tmp_path / "run", {"train": {}})
    rf.save_checkpoint(model, opt, {"step": 1}, keep=1)
    import shutil

    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        rf.save_checkpoint(model, opt, {"step": 2}, keep=1)  # index says [2]; step 1 not yet deleted
    monkeypatch.undo()
    assert os.path.isdir(os.path.join(rf.checkpoints, "step-00000001"))
    rf = RunFolder.open(tmp_path / "run")
    assert rf.index() == [{"step": 2, "dir": "step-00000002"}]
    assert sorted(os.listdir(rf.checkpoints)) == ["index.json", "step-00000002"]
    assert all(os.path.isdir(os.path.join(rf.checkpoints, c["dir"])) for c in rf.index())


# ---- a kill in the middle of a save --------------------------------------------------------------
def kill_between_the_renames_of(name: str, monkeypatch) -> None:
    """The next swap of RUN/<name> (``atomic_folder``) dies after the old folder was renamed
    aside and before the new one takes its place."""
    real = os.rename

    def rename(src, dst):
        real(src, dst)
        if os.path.basename(dst).startswith(f".{name}.old-"):
            raise SystemExit("killed between the renames")

    monkeypatch.setattr(atomic.os, "rename", rename)


def test_a_kill_between_the_renames_of_a_swap_leaves_a_run_that_resumes(straight, tmp_path, monkeypatch):
    """last/ is swapped in whole at the end of every invocation: killed after the old last/ went
    aside and before the new one took its place, the folder has no last/. Opening the run puts
    the old one back, and the run resumes and finishes as if never stopped."""
    d = str(tmp_path / "run")
    run(d, max_steps=4)  # last/ of step 4
    kill_between_the_renames_of("last", monkeypatch)
    with pytest.raises(SystemExit):
        run(d, resume=True, max_steps=7)  # the checkpoint of step 7 is written, then last/ is swapped
    monkeypatch.undo()
    assert "last" not in os.listdir(d) and any(n.startswith(".last.old-") for n in os.listdir(d))
    rf = RunFolder.open(d)  # repairs
    assert "last" in os.listdir(d) and not any(n.startswith(".last.") for n in os.listdir(d))
    assert json.load(open(os.path.join(d, "last", "model.json")))["step"] == 4  # the old one, whole
    assert rf.index()[-1]["step"] == 7
    model, state = run(d, resume=True)
    assert state.step == 9 and json.load(open(os.path.join(d, "last", "model.json")))["step"] == 9
    assert_same_weights(weights(model), straight[1])


def test_a_finished_run_whose_last_save_was_killed_gets_its_last_model(tmp_path, monkeypatch):
    d = str(tmp_path / "run")
    run(d, max_steps=4)
    kill_between_the_renames_of("last", monkeypatch)
    with pytest.raises(SystemExit):
        run(d, resume=True)  # runs to the end (step 9, finished), killed while swapping last/
    monkeypatch.undo()
    logs = []
    model, state = run(d, resume=True, log=logs.append)
    assert state.finished and any("nothing to do" in m for m in logs)
    assert json.load(open(os.path.join(d, "last", "model.json")))["step"] == 9
    assert_same_weights(safetensors.load_file(os.path.join(d, "last", "model.safetensors")), weights(model))


def test_temp_folders_of_a_killed_save_are_removed_on_the_next_start(tmp_path):
    d = str(tmp_path / "run")
    run(d, max_steps=2)
    leftovers = [os.path.join(d, ".best.new-abc123"), os.path.join(d, "checkpoints", ".step-00000004.new-xyz"),
                 os.path.join(d, ".metrics.jsonl.q1w2.tmp")]
    for p in leftovers[:2]:
        os.makedirs(p)
        open(os.path.join(p, "model.safetensors"), "wb").write(b"half")
    open(leftovers[2], "w").write("{")
    _, state = run(d, resume=True, max_steps=3)
    assert state.step == 3
    assert not any(os.path.exists(p) for p in leftovers)


def test_resume_refuses_a_folder_without_a_run(tmp_path):
    with pytest.raises(NotARunError, match="does not exist"):
        run(str(tmp_path / "nothing"), resume=True)
    with pytest.raises(NotARunError, match="holds no run"):
        run(str(tmp_path), resume=True)


def test_resume_refuses_other_data_or_fixed_settings(tmp_path):
    d = str(tmp_path / "run")
    run(d, max_steps=2)
    with pytest.raises(ValueError, match="other batch_size than it started with"):
        run(d, resume=True, batch_size=32)
    task = DigitTask(DemoConfig(**{**DEMO.__dict__, "train_size": 100}))
    with pytest.raises(ValueError, match="data settings differ.*train_digest"):
        train(task, task.build_model(), TrainConfig(**CFG), d, resume=True, log=lambda m: None)


# ---- limits of one invocation ----------------------------------------------------------------
def test_resume_at_max_steps_does_nothing_and_says_so(tmp_path, capsys):
    d = str(tmp_path / "run")
    run(d, max_steps=4)
    before = digest(os.path.join(d, "checkpoints", "step-00000004"))
    logs = []
    _, state = run(d, resume=True, max_steps=4, log=logs.append)
    assert state.step == 4 and any("max_steps is 4: nothing to do" in m for m in logs)
    assert digest(os.path.join(d, "checkpoints", "step-00000004")) == before
    for bad in ("0", "-3"):
        assert main(["demo", "reverse", "--max-steps", bad, "--out", str(tmp_path / "x")]) == 2
        assert "max_steps must be >= 1" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")


def test_max_steps_at_an_epochs_end_evaluates_that_epoch(tmp_path):
    d = str(tmp_path / "run")
    _, state = run(d, max_steps=3)  # 3 batches an epoch
    assert state.step == 3 and len(state.history) == 1 and os.path.isdir(os.path.join(d, "best"))
    assert RunFolder.open(d).index()[-1]["step"] == 3


def test_config_json_is_written_once_and_changes_are_recorded_beside_it(tmp_path):
    d = str(tmp_path / "run")
    run(d, max_steps=4)
    with open(os.path.join(d, "config.json"), "rb") as f:
        before = f.read()
    cfg = json.loads(before)
    assert cfg["data"]["settings"]["train_limit"] is None and cfg["data"]["train_pairs"] == 192
    assert cfg["data"]["demo"]["train_size"] == 192
    _, state = run(d, resume=True, epochs=4, lr=2e-3)
    assert state.step == 12
    with open(os.path.join(d, "config.json"), "rb") as f:
        assert f.read() == before
    changes = RunFolder.open(d).changes()
    assert changes == [{"step": 4, "epoch": 1, "set": {"epochs": 4, "lr": 2e-3}, "restart_lr": False}]
    assert RunFolder.open(d).train_settings()["epochs"] == 4


def test_best_and_last_are_self_describing_model_folders(straight):
    d, final = straight
    for name in ("best", "last"):
        m = load_model(os.path.join(d, name))
        out = m.translate(["123", "4567", "12"])
        assert len(out) == 3 and all(isinstance(s, str) for s in out)
    last = safetensors.load_file(os.path.join(d, "last", "model.safetensors"))
    assert_same_weights(last, final)


def test_resume_reads_moved_data_but_not_changed_data(tmp_path):
    """The digest decides whether the data is the one the run started on, not the file name."""
    from minis2s.data import write_pairs
    from minis2s.task import Seq2SeqTask

    pairs = [(s, s[::-1]) for s in ("123", "4567", "89", "1234", "567", "8901")] * 20
    write_pairs(tmp_path / "a.tsv", pairs)
    write_pairs(tmp_path / "b.tsv", pairs)
    write_pairs(tmp_path / "c.tsv", pairs[:-1] + [("999", "998")])

    def task(name):
        return Seq2SeqTask(tmp_path / name, tmp_path / "a.tsv",
                           model=DigitTask(DEMO).model_config)

    d = str(tmp_path / "run")
    config = TrainConfig(epochs=2, batch_size=32)
    train(task("a.tsv"), task("a.tsv").build_model(), TrainConfig(**{**config.__dict__, "max_steps": 2}), d,
          log=lambda m: None)
    state = train(task("b.tsv"), task("b.tsv").build_model(), config, d, resume=True, log=lambda m: None)
    assert state.step == 8
    with pytest.raises(ValueError, match="data settings differ.*train_digest"):
        train(task("c.tsv"), task("c.tsv").build_model(), config, d, resume=True, log=lambda m: None)


def test_a_failed_evaluation_loses_no_step_and_resume_evaluates_again(straight, tmp_path, monkeypatch):
    d = str(tmp_path / "run")

    def broken(self, model, *a, **k):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(DigitTask, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        run(d)
    monkeypatch.undo()
    assert RunFolder.open(d).index()[-1]["step"] == 3  # epoch 1's steps, checkpointed before its evaluation
    model, state = run(d, resume=True)
    assert state.step == 9 and [h["epoch"] for h in state.history] == [1, 2, 3]
    assert_same_weights(weights(model), straight[1])


def test_a_full_disk_is_one_line_naming_the_file_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    """ENOSPC while a checkpoint is written: one line on stderr that says what and where, exit
    1, and the previous checkpoint intact; once there is room, the run resumes."""
    import errno

    out = str(tmp_path / "run")
    argv = ["demo", "reverse", "--train-size", "192", "--dev-size", "8", "--test-size", "8", "--hidden", "8",
            "--epochs", "2", "--batch-size", "64", "--checkpoint-every", "2", "--quiet", "--out", out]
    real, writes = os.fsync, [0]

    def full(fd):
        writes[0] += 1
        if writes[0] > 12:  # step 0's checkpoint (and more) fit; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", full)
    assert main(argv) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("minis2s: error: No space left on device: ") and out in last and "Traceback" not in err
    monkeypatch.undo()
    latest = RunFolder.open(out).latest()
    assert latest is not None and os.path.isfile(os.path.join(latest, "state.json"))
    assert main(["demo", "reverse", "--resume", "--quiet", "--out", out]) == 0


def test_resume_says_what_it_repaired(tmp_path):
    d = str(tmp_path / "run")
    run(d, max_steps=2)
    os.makedirs(os.path.join(d, ".best.new-abc123"))
    logs = []
    run(d, resume=True, max_steps=3, log=logs.append)
    assert any("removed the unfinished" in m and ".best.new-abc123" in m for m in logs), logs
