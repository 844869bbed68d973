"""The training loop on a tiny G2P task: exact resume, divergence, and the run folder.

- Resume is bit-identical: a run stopped after k steps (``max_steps=k``) and resumed in a fresh
  model ends with every weight, the Adam state, the learning rate, the random states and the
  metrics equal (np.array_equal) to a run never stopped. Dropout > 0 and teacher forcing 0.5, so
  the dropout masks and the teacher-forcing coins must both be replayed; stops inside an epoch,
  exactly at an epoch's end (which is evaluated first), after an epoch boundary, and twice. Two
  negative controls show the comparison would notice a random state that is not restored.
- A NaN/inf loss (or gradient) raises TrainingDiverged with a clear message; the latest
  checkpoint is the last good one, loads, and training resumes from it.
- A weight that becomes non-finite with a finite loss never reaches a checkpoint either.
- The run folder holds config.json, metrics.jsonl, curves.png, best/, last/ and checkpoints/.
- The digit demo task trains through the same loop and computes its accuracy.
- AttentionSeq2Seq learns a copy task in 40 Adam steps of a hand-written loop (loss < 1/4 of
  the first step's): the model trains end to end.
"""
import itertools
import json
import os

import numpy as np
import pytest
from conftest import make_attention_seq2seq

import minis2s.training.trainer as train_mod
from minis2s import safetensors
from minis2s.checkpoint import read_model_dir
from minis2s.data.cmudict import load_split
from minis2s.demo import DemoConfig, DigitTask
from minis2s.g2p import G2P, G2PTask
from minis2s.models.config import ModelConfig
from minis2s.nn import CrossEntropyLoss
from minis2s.optim import Adam
from minis2s.random import manual_seed
from minis2s.task import DataConfig
from minis2s.training import RunFolder, TrainConfig, TrainingDiverged, train
from minis2s.training.schedule import cosine_lr

MODEL_CFG = ModelConfig(hidden=16, layers=2, embedding=8, dropout=0.3)
# 5 batches per epoch, 3 epochs: 15 steps; a checkpoint every 4 steps and at each epoch's end
TRAIN_CFG = {"epochs": 3, "batch_size": 64, "lr": 3e-3, "teacher_forcing": 0.5, "checkpoint_every": 4, "seed": 3,
             "patience": 5}
STEPS = 15
TIMING = {"train_seconds", "pairs_per_s"}  # wall-clock fields: the only ones allowed to differ


def make_task_pairs():
    return [p for w, prons in words_small()[0].items() for p in prons]


def words_small():
    train_words = load_split("train")
    dev_words = load_split("dev")
    return ({w: train_words[w] for w in list(train_words)[::400]}, {w: dev_words[w] for w in list(dev_words)[::150]})


@pytest.fixture(scope="module")
def words():
    train_words = load_split("train")
    dev_words = load_split("dev")
    train_small = {w: train_words[w] for w in list(train_words)[::400]}  # 265 words, ~270 pairs
    dev_small = {w: dev_words[w] for w in list(dev_words)[::150]}  # 40 words
    return train_small, dev_small


def make_task(words):
    return G2PTask(MODEL_CFG, train_words=words[0], dev_words=words[1], eval_batch=64)


def run(words, run_dir, *, resume=False, init_seed=3, log=None, **overrides):
    """One call of train() in a fresh task and model, as a fresh process would make them."""
    task = make_task(words)
    manual_seed(init_seed)
    model = task.build_model()
    state = train(task, model, TrainConfig(**{**TRAIN_CFG, **overrides}), run_dir, resume=resume,
                  log=log or (lambda msg: None))
    return model, state


def latest_checkpoint(run_dir):
    return RunFolder.open(run_dir).latest()


def read_jsonl(*path):
    with open(os.path.join(*path)) as f:
        return [json.loads(line) for line in f]


def without_timing(history):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


@pytest.fixture(scope="module")
def straight(words, tmp_path_factory):
    """The uninterrupted run: (run folder, final model, final state)."""
    d = str(tmp_path_factory.mktemp("straight"))
    model, state = run(words, d)
    assert state.step == STEPS
    return d, model, state


def assert_identical_runs(a_dir, a_model, a_state, b_dir, b_model, b_state):
    # every weight, in memory
    wa, wb = a_model.state_dict(), b_model.state_dict()
    assert list(wa) == list(wb)
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and np.array_equal(wa[k], wb[k]), f"weight {k} differs"
    # the final checkpoints: weights, Adam moments and step counts, lr, random states, counters
    ca, cb = latest_checkpoint(a_dir), latest_checkpoint(b_dir)
    assert os.path.basename(ca) == os.path.basename(cb) == f"step-{STEPS:08d}"
    for f in ("model.safetensors", "optimizer.safetensors"):
        ta, tb = safetensors.load_file(os.path.join(ca, f)), safetensors.load_file(os.path.join(cb, f))
        assert ta.keys() == tb.keys()
        for k in ta:
            assert np.array_equal(ta[k], tb[k]), f"{f}: {k} differs"
    with open(os.path.join(ca, "state.json")) as f:
        sa = json.load(f)
    with open(os.path.join(cb, "state.json")) as f:
        sb = json.load(f)
    for key in ("optimizer", "tf_rng", "dropout_rng", "step", "epoch", "step_in_epoch", "best",
                "bad_epochs", "lr_bad_epochs", "pairs_seen", "lr", "finished", "stop_reason"):
        assert sa[key] == sb[key], key
    assert without_timing(sa["history"]) == without_timing(sb["history"])
    assert without_timing(a_state.history) == without_timing(b_state.history)
    # the best model and the metrics file
    ba = safetensors.load_file(os.path.join(a_dir, "best", "model.safetensors"))
    bb = safetensors.load_file(os.path.join(b_dir, "best", "model.safetensors"))
    assert all(np.array_equal(ba[k], bb[k]) for k in ba)
    assert without_timing(read_jsonl(a_dir, "metrics.jsonl")) == without_timing(read_jsonl(b_dir, "metrics.jsonl"))
    la = safetensors.load_file(os.path.join(a_dir, "last", "model.safetensors"))
    lb = safetensors.load_file(os.path.join(b_dir, "last", "model.safetensors"))
    assert all(np.array_equal(la[k], lb[k]) for k in la)


@pytest.mark.parametrize("stops", [(3,), (5,), (7,), (3, 11)],
                         ids=["mid-epoch-1-then-across-epochs", "at-an-epoch-end", "after-an-epoch-boundary",
                              "stopped-twice"])
def test_resume_is_bit_identical(words, straight, tmp_path, stops):
    d = str(tmp_path / "run")
    for i, k in enumerate(stops):
        # the first part starts as the straight run does; each resume starts from another
        # initialisation (and dropout stream): what it continues must come from the checkpoint
        _, state = run(words, d, resume=i > 0, init_seed=3 if i == 0 else 100 + i, max_steps=k)
        assert state.step == k
        assert os.path.basename(latest_checkpoint(d)) == f"step-{k:08d}"
    model, state = run(words, d, resume=True, init_seed=999)
    assert state.step == STEPS
    assert_identical_runs(*straight, d, model, state)


def test_the_run_exercises_what_resume_must_replay(straight):
    """The comparison above is not vacuous: the learning rate was reduced on a plateau during
    the run (so a resume in epoch 3 must restore the reduced rate and the plateau counters), and
    dropout and teacher forcing are random (the negative controls below show both matter)."""
    d, _, state = straight
    assert len(state.history) == 3
    lrs = [h["lr"] for h in state.history]
    assert lrs[-1] < lrs[0] == TRAIN_CFG["lr"]
    assert MODEL_CFG.dropout > 0 and TRAIN_CFG["teacher_forcing"] == 0.5
    with open(os.path.join(latest_checkpoint(d), "state.json")) as f:
        saved = json.load(f)
    assert all(s["step"] == STEPS for s in saved["optimizer"]["scalars"])


@pytest.mark.parametrize("which", ["dropout", "teacher-forcing"])
def test_resume_without_restoring_a_random_state_differs(words, straight, tmp_path, monkeypatch, which):
    """Negative control: resume with one random state not restored -> different weights."""
    d = str(tmp_path / "run")
    run(words, d, max_steps=7)
    real = RunFolder.load_latest
    key = {"dropout": "dropout_rng", "teacher-forcing": "tf_rng"}[which]

    def forget(*a, **k):  # the saved state of that generator replaced by another
        folder, state = real(*a, **k)
        state[key] = np.random.default_rng(12345).bit_generator.state
        return folder, state

    monkeypatch.setattr(RunFolder, "load_latest", forget)
    model, _ = run(words, d, resume=True, init_seed=999)
    a = straight[1].state_dict()
    assert any(not np.array_equal(a[k], v) for k, v in model.state_dict().items())


# ---- divergence ----------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf weights: expected
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_loss_stops_training_and_keeps_the_last_good_checkpoint(words, tmp_path, monkeypatch, bad):
    d = str(tmp_path / "run")
    real = train_mod.loss_and_grad
    calls, snapshot = [0], {}

    def poisoned(model, batch, *a, **k):
        calls[0] += 1
        if calls[0] == 6:  # steps 1-5 done, the end-of-epoch checkpoint written: remember its weights
            snapshot.update(model.state_dict())
        if calls[0] == 7:  # step 7: a weight goes bad
            model.decoder.fc_out.weight.data[:] = bad
        return real(model, batch, *a, **k)

    monkeypatch.setattr(train_mod, "loss_and_grad", poisoned)
    with pytest.raises(TrainingDiverged, match=r"the training loss became (nan|inf) at step 7.*the last good one"):
        run(words, d)
    monkeypatch.undo()
    ck = latest_checkpoint(d)
    assert os.path.basename(ck) == "step-00000005"
    saved = safetensors.load_file(os.path.join(ck, "model.safetensors"))
    assert all(np.isfinite(v).all() for v in saved.values())
    assert snapshot and all(np.array_equal(saved[k], snapshot[k]) for k in snapshot)
    # it loads, and training resumes from it and finishes
    task = make_task(words)
    model = task.build_model()
    assert RunFolder.open(d).load_latest(model, Adam(model.parameters()))[1]["step"] == 5
    _, state = run(words, d, resume=True)
    assert state.step == STEPS


def after_step(monkeypatch, n: int, damage) -> None:
    """``damage(model)`` right after the n-th forward and backward (before clipping and Adam)."""
    real, calls = train_mod.loss_and_grad, [0]

    def wrapped(model, batch, *a, **k):
        loss = real(model, batch, *a, **k)
        calls[0] += 1
        if calls[0] == n:
            damage(model)
        return loss

    monkeypatch.setattr(train_mod, "loss_and_grad", wrapped)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # clipping an inf: expected
def test_nonfinite_gradient_with_a_finite_loss_never_reaches_a_checkpoint(words, tmp_path, monkeypatch):
    """The gradient overflows at step 4, a checkpoint step: training stops before the optimiser
    step, so no NaN weight is written and the previous checkpoint stays the latest."""
    d = str(tmp_path / "run")
    after_step(monkeypatch, 4, lambda model: model.encoder.embedding.weight.grad.__setitem__((5, 0), np.inf))
    with pytest.raises(TrainingDiverged, match="gradient norm became (inf|nan) at step 4.*the last good one"):
        run(words, d, checkpoint_every=2)
    ck = latest_checkpoint(d)
    assert os.path.basename(ck) == "step-00000002"
    saved = safetensors.load_file(os.path.join(ck, "model.safetensors"))
    assert all(np.isfinite(v).all() for v in saved.values())
    assert not os.path.exists(os.path.join(d, "checkpoints", "step-00000004"))


def test_a_nonfinite_weight_with_a_finite_loss_never_becomes_the_latest_checkpoint(words, tmp_path, monkeypatch):
    """After step 7 the embedding row of <sos> — never read from a source, so the loss stays
    finite — becomes inf. The checkpoint due at step 8 is refused: latest stays step 5, and
    resuming from it is not the diverged state."""
    d = str(tmp_path / "run")
    after_step(monkeypatch, 7, lambda model: model.encoder.embedding.weight.data.__setitem__(1, np.inf))  # <sos>
    with pytest.raises(TrainingDiverged, match=r"weight encoder.embedding.weight is not finite at step 8"):
        run(words, d)
    monkeypatch.undo()
    ck = latest_checkpoint(d)
    assert os.path.basename(ck) == "step-00000005"
    assert not os.path.exists(os.path.join(d, "checkpoints", "step-00000008"))
    saved = safetensors.load_file(os.path.join(ck, "model.safetensors"))
    assert all(np.isfinite(v).all() for v in saved.values())
    _, state = run(words, d, resume=True)
    assert state.step == STEPS


# ---- the run folder ------------------------------------------------------------------------------
def test_run_folder_contents(straight):
    d = straight[0]
    assert {"config.json", "metrics.jsonl", "curves.png", "best", "last", "checkpoints"} <= set(os.listdir(d))
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["train"]["teacher_forcing"] == 0.5 and cfg["train"]["epochs"] == 3
    assert "max_steps" not in cfg["train"]  # a limit of one invocation, not a setting of the run
    assert cfg["task"]["task"] == "g2p" and cfg["task"]["model"]["hidden"] == 16
    assert cfg["task"]["vocab"]["trg"][:3] == ["AA", "AE", "AH"]
    assert cfg["data"]["train_pairs"] == len(make_task_pairs()) and len(cfg["data"]["train_digest"]) == 64
    lines = read_jsonl(d, "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    for r in lines:
        assert {"step", "train_loss", "lr", "teacher_forcing", "dev_wer", "dev_per", "pairs_per_s"} <= set(r)
        assert np.isfinite(r["train_loss"]) and 0 <= r["dev_wer"] <= 1
    with open(os.path.join(d, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    for name in ("best", "last"):
        assert sorted(os.listdir(os.path.join(d, name))) == ["model.json", "model.safetensors"]
        g2p = G2P(os.path.join(d, name))
        assert g2p.meta["epoch"] in (1, 2, 3) and "dev" in g2p.meta
        assert len(g2p(["cat", "hello"])) == 2
    last = G2P(os.path.join(d, "last"))
    assert last.meta["step"] == STEPS and last.meta["epoch"] == 3
    ck = sorted(os.listdir(os.path.join(d, "checkpoints")))
    assert ck == ["index.json", "step-00000012", f"step-{STEPS:08d}"]  # the newest two kept (by step)
    assert all(sorted(os.listdir(os.path.join(d, "checkpoints", c))) ==
               ["model.safetensors", "optimizer.safetensors", "state.json"] for c in ck[1:])
    with open(os.path.join(d, "checkpoints", ck[-1], "state.json")) as f:
        st = json.load(f)
    assert {"tf_rng", "dropout_rng", "epoch", "step_in_epoch", "step", "optimizer", "best", "history"} <= set(st)
    assert st["finished"] and st["stop_reason"] == "all 3 epochs done"


def test_train_config_refuses_bad_values():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="teacher_forcing"):
        TrainConfig(teacher_forcing=1.5)
    tc = TrainConfig(epochs=5, teacher_forcing=1.0, teacher_forcing_end=0.0)
    assert [tc.teacher_forcing_at(e) for e in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


# ---- the digit demo through the same loop --------------------------------------------------------
def test_digit_demo_trains_and_reports_accuracy(tmp_path):
    task = DigitTask(DemoConfig(task="reverse", train_size=256, dev_size=40, test_size=40, hidden=16, embedding=8))
    manual_seed(0)
    model = task.build_model()
    state = train(task, model, TrainConfig(epochs=2, batch_size=64), str(tmp_path), log=lambda m: None)
    assert state.step == 8 and len(state.history) == 2
    for h in state.history:
        assert 0.0 <= h["dev_exact"] <= 1.0 and np.isfinite(h["train_loss"])
    assert state.history[1]["train_loss"] < state.history[0]["train_loss"]
    acc = task.accuracy(model, "test")
    assert 0.0 <= acc <= 1.0
    preds = task.predict(model, ["123", "98765"])
    assert all(isinstance(p, str) and set(p) <= set("0123456789") for p in preds)
    # the held-out strings never occur in training
    assert not set(task.splits["test"]) & set(task.splits["train"])


# ---- AttentionSeq2Seq learns, by a hand-written loop ----------------------------------------------
def test_attention_seq2seq_learns_to_copy_through_attention():
    """A few Adam steps on a copy task drive the loss well down: the model trains end to end."""
    manual_seed(0)
    model = make_attention_seq2seq("general", True, src_vocab=8, trg_vocab=8, He=8, H=16, E=8, L=1)
    rng = np.random.default_rng(0)
    src = rng.integers(3, 8, (5, 16))
    trg = np.concatenate([np.full((1, 16), 1), src, np.full((1, 16), 2)])  # <sos> copy <eos>
    ce, opt = CrossEntropyLoss(), Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(40):
        model.zero_grad()
        out = model(src, trg, 1.0, generator=np.random.default_rng(0))
        losses.append(ce(out[1:].reshape(-1, 8), trg[1:].reshape(-1)))
        dout = np.zeros_like(out)
        dout[1:] = ce.backward().reshape(out[1:].shape)
        model.backward(dout)
        opt.step()
    assert losses[-1] < 0.25 * losses[0], losses


# ---- the learning-rate schedule and early stopping ---------------------------------------------
@pytest.mark.parametrize("threshold", [0.0, 0.01])
def test_plateau_schedule_follows_the_relative_threshold(tmp_path, monkeypatch, threshold):
    """Scripted dev errors: any improvement keeps the model and resets early stopping; only an
    improvement of at least ``lr_threshold`` (relative) keeps the learning rate."""
    script = iter([0.50, 0.40, 0.398, 0.397, 0.45, 0.45, 0.45, 0.45, 0.45])  # epoch 3, 4: +0.5%, +0.25%
    task = DigitTask(DemoConfig(task="reverse", train_size=64, dev_size=8, test_size=8, hidden=8, embedding=4))
    task.data_config = DataConfig(tokens="char", metric="wer")  # a lower-is-better metric, scripted
    monkeypatch.setattr(task, "evaluate", lambda model: {"wer": next(script)})
    manual_seed(0)
    model = task.build_model()
    state = train(task, model, TrainConfig(epochs=9, batch_size=64, lr=1e-3, patience=4, lr_patience=1,
                                           lr_threshold=threshold), str(tmp_path), log=lambda m: None)
    lrs = [h["lr"] for h in state.history]  # the lr each epoch trained with
    if threshold == 0.0:  # epochs 3 and 4 improved: the lr holds until the first worse epoch (5)
        assert lrs[:6] == [1e-3] * 5 + [5e-4]
    else:  # 0.5% and 0.25% are below 1%: halved after epochs 3 and 4 as well
        assert lrs[:6] == [1e-3, 1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4]
    assert state.best == 0.397  # the model of epoch 4 was kept either way
    with open(os.path.join(tmp_path, "best", "model.json")) as f:
        assert json.load(f)["epoch"] == 4
    assert len(state.history) == 8  # epochs 5-8 did not improve: early stop after patience 4


def test_cosine_lr_runs_from_lr_to_min_lr_along_half_a_cosine():
    lrs = [cosine_lr(1e-3, 1e-5, s, 10, 20) for s in range(8, 22)]
    assert lrs[:3] == [1e-3, 1e-3, 1e-3]  # before and at the cycle's start
    assert lrs[11] == pytest.approx(1e-5, rel=1e-12) and lrs[-1] == pytest.approx(1e-5, rel=1e-12)  # step 19: the last
    assert all(a > b for a, b in itertools.pairwise(lrs[2:12]))  # strictly falling inside the cycle
    mid = cosine_lr(1e-3, 1e-5, 10 + 4.5, 10, 20)
    assert mid == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-12)  # halfway: the mean of the two


def test_cosine_schedule_in_the_loop_and_a_warm_restart(tmp_path, monkeypatch):
    """Epoch lrs follow cosine_lr over the whole run; a resume with restart_lr starts a second
    cycle at lr from the current step and resets early stopping."""
    task = DigitTask(DemoConfig(task="reverse", train_size=128, dev_size=8, test_size=8, hidden=8, embedding=4))
    task.data_config = DataConfig(tokens="char", metric="wer")
    monkeypatch.setattr(task, "evaluate", lambda model: {"wer": 0.5})  # never improves after epoch 1
    manual_seed(0)
    cfg = {"batch_size": 64, "lr": 1e-3, "min_lr": 1e-5, "lr_schedule": "cosine", "patience": 10}
    state = train(task, task.build_model(), TrainConfig(epochs=3, **cfg), str(tmp_path), log=lambda m: None)
    per_epoch = len(task.train_batches(np.random.default_rng(0), 64))
    assert per_epoch == 2
    # the lr recorded at an epoch's end is the one its last step used: steps 1, 3, 5 of [0, 6)
    assert [h["lr"] for h in state.history] == [cosine_lr(1e-3, 1e-5, s, 0, 6) for s in (1, 3, 5)]
    assert state.history[-1]["lr"] == pytest.approx(1e-5)
    assert state.bad_epochs == 2
    with pytest.raises(ValueError, match="needs resume=True"):
        train(task, task.build_model(), TrainConfig(epochs=3, **cfg), str(tmp_path), restart_lr=True)
    logs = []
    state = train(task, task.build_model(), TrainConfig(epochs=5, **{**cfg, "lr": 2e-3}), str(tmp_path),
                  resume=True, restart_lr=True, log=logs.append)
    assert any("learning rate restarted at 0.002" in m for m in logs)
    assert state.lr_cycle_start == 6 and state.bad_epochs == 2  # reset at the restart, +2 since
    assert [h["lr"] for h in state.history[3:]] == [cosine_lr(2e-3, 1e-5, s, 6, 10) for s in (7, 9)]


def test_keep_epochs_saves_the_last_epochs_models(tmp_path):
    task = DigitTask(DemoConfig(task="reverse", train_size=64, dev_size=8, test_size=8, hidden=8, embedding=4))
    manual_seed(0)
    model = task.build_model()
    train(task, model, TrainConfig(epochs=3, batch_size=64, keep_epochs=2, patience=5),
          str(tmp_path), log=lambda m: None)
    assert sorted(os.listdir(tmp_path / "epochs")) == ["epoch-002", "epoch-003"]
    meta, weights = read_model_dir(tmp_path / "epochs" / "epoch-003")
    assert meta["epoch"] == 3
    for k, v in model.state_dict().items():  # the last epoch's folder holds the final weights
        assert np.array_equal(weights[k], v), k
    with pytest.raises(ValueError, match="keep_epochs must be >= 0"):
        TrainConfig(keep_epochs=-1)
