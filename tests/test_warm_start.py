"""A run that starts from a model folder's weights (``TrainConfig.init_from``, ``--init-from``):
minis2s/training/warm_start.py.

- The run's first checkpoint (step 0) holds exactly the folder's weights, and its config.json
  names the folder and its digest; the optimiser starts afresh (no Adam state at step 0).
- An int8 export starts a run from its dequantised weights; another dropout is allowed.
- A folder that does not fit (other sizes, architecture or vocabulary; no folder) is a
  ValueError naming init_from and what differs, and no run folder is created.
- A warm-started run resumes from its own checkpoints: the first folder is no longer needed.
- The CLI: --init-from takes a shipped model's name; an ensemble's name, a bad folder: one line.
"""
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
from test_cli import assert_clean_error, minis2s
from test_training import MODEL_CFG, TRAIN_CFG, make_task, words_small

from minis2s import safetensors
from minis2s.checkpoint import export_model_dir, read_model_dir
from minis2s.data.cmudict import load_split
from minis2s.g2p import G2PTask
from minis2s.random import manual_seed
from minis2s.training import RunFolder, TrainConfig, train


@pytest.fixture(scope="module")
def words():
    return words_small()  # test_training's tiny task: 265 train words, 40 dev


@pytest.fixture(scope="module")
def trained(words, tmp_path_factory):
    """A short run's RUN/last: the folder later runs start from."""
    d = str(tmp_path_factory.mktemp("first"))
    manual_seed(3)
    task = make_task(words)
    train(task, task.build_model(), TrainConfig(**{**TRAIN_CFG, "max_steps": 6}), d, log=lambda m: None)
    return os.path.join(d, "last")


def start(words, run_dir, init_from, *, model_cfg=MODEL_CFG, seed=11, **overrides):
    """A run of ``overrides`` from ``init_from``, its model seeded with another seed than the
    first run's (random weights that would differ everywhere)."""
    task = G2PTask(model_cfg, train_words=words[0], dev_words=words[1], eval_batch=64)
    manual_seed(seed)
    model = task.build_model()
    cfg = TrainConfig(**{**TRAIN_CFG, "init_from": os.fspath(init_from), **overrides})
    state = train(task, model, cfg, run_dir, log=lambda m: None)
    return model, state


def read_json(path):
    with open(path) as f:
        return json.load(f)


def step0_weights(run_dir) -> dict:
    return safetensors.load_file(os.path.join(run_dir, "checkpoints", "step-00000000", "model.safetensors"))


def test_the_first_checkpoint_holds_the_folders_weights_exactly(words, trained, tmp_path):
    d = str(tmp_path / "warm")
    start(words, d, trained, max_steps=1)
    meta, theirs = read_model_dir(trained)
    ours = step0_weights(d)
    assert sorted(ours) == sorted(theirs)
    for k in theirs:
        assert np.array_equal(ours[k], theirs[k]), k
    config = read_json(os.path.join(d, "config.json"))
    assert config["init"] == {"folder": os.path.abspath(trained), "digest": meta["digest"]}
    assert config["train"]["init_from"] == trained
    # the optimiser starts afresh: no Adam moments or step counts in the step-0 checkpoint
    state = read_json(os.path.join(d, "checkpoints", "step-00000000", "state.json"))
    assert state["optimizer"]["scalars"] and all(s == {} for s in state["optimizer"]["scalars"]), state["optimizer"]
    assert not safetensors.load_file(os.path.join(d, "checkpoints", "step-00000000", "optimizer.safetensors"))


def test_without_init_from_the_weights_are_the_seeds_not_the_folders(words, trained, tmp_path):
    """The control: the same call without init_from starts elsewhere (the test above can fail)."""
    d = str(tmp_path / "cold")
    task = make_task(words)
    manual_seed(11)
    train(task, task.build_model(), TrainConfig(**{**TRAIN_CFG, "max_steps": 1}), d, log=lambda m: None)
    theirs, ours = read_model_dir(trained)[1], step0_weights(d)
    assert not any(np.array_equal(ours[k], theirs[k]) for k in theirs)
    assert "init" not in read_json(os.path.join(d, "config.json"))


def test_an_int8_export_with_another_dropout_starts_from_its_dequantised_weights(words, trained, tmp_path):
    q = str(tmp_path / "int8")
    export_model_dir(trained, q, stored_dtype="int8")
    d = str(tmp_path / "warm")
    start(words, d, q, model_cfg=replace(MODEL_CFG, dropout=0.0), max_steps=1)
    theirs, ours = read_model_dir(q)[1], step0_weights(d)
    for k in theirs:
        assert np.array_equal(ours[k], theirs[k]), k
    assert not all(np.array_equal(ours[k], read_model_dir(trained)[1][k]) for k in theirs), "int8 must round"


@pytest.mark.parametrize("change, fragment", [
    ({"hidden": 24}, "hidden 16 (the run's: 24)"),
    ({"arch": "attention", "reverse_source": False}, "arch 'seq2seq' (the run's: 'attention')"),
    ({"cell": "gru"}, "cell 'lstm' (the run's: 'gru')"),
])
def test_a_folder_of_another_model_is_refused_before_the_run_folder(words, trained, tmp_path, change, fragment):
    d = str(tmp_path / "warm")
    with pytest.raises(ValueError, match="init_from") as e:
        start(words, d, trained, model_cfg=replace(MODEL_CFG, **change), max_steps=1)
    assert fragment in str(e.value)
    assert not os.path.exists(d)


def test_another_vocabulary_is_refused(words, trained, tmp_path):
    d = str(tmp_path / "warm")
    train_stressed, dev_stressed = load_split("train", True), load_split("dev", True)
    stressed = ({w: train_stressed[w] for w in words[0]}, {w: dev_stressed[w] for w in words[1]})
    task = G2PTask(MODEL_CFG, train_words=stressed[0], dev_words=stressed[1], eval_batch=64, stress=True)
    with pytest.raises(ValueError, match=r"init_from .*target vocabulary or tokenizer is not the run's"):
        train(task, task.build_model(), TrainConfig(**{**TRAIN_CFG, "init_from": trained, "max_steps": 1}), d,
              log=lambda m: None)
    assert not os.path.exists(d)


def test_no_folder_and_bad_arguments(words, tmp_path):
    d = str(tmp_path / "warm")
    with pytest.raises(ValueError, match=r"init_from '.*nowhere': not a model folder .*does not exist"):
        start(words, d, tmp_path / "nowhere", max_steps=1)
    assert not os.path.exists(d)
    with pytest.raises(ValueError, match="init_from names no model folder"):
        TrainConfig(init_from="  ")
    task = make_task(words)
    with pytest.raises(ValueError, match="init_folder was given but init_from is None"):
        train(task, task.build_model(), TrainConfig(**TRAIN_CFG), d, init_folder=str(tmp_path))


def test_a_warm_started_run_resumes_from_its_own_checkpoints(words, trained, tmp_path):
    """Stopped at step 4 and resumed after the first folder is gone: the same end as a run
    never stopped (its weights bit for bit)."""
    straight = str(tmp_path / "straight")
    model_a, state_a = start(words, straight, trained)
    first = str(tmp_path / "first-copy")
    shutil.copytree(trained, first)
    d = str(tmp_path / "stopped")
    start(words, d, first, max_steps=4)
    shutil.rmtree(first)
    task = make_task(words)
    manual_seed(99)
    model_b = task.build_model()
    cfg = TrainConfig(**{**TRAIN_CFG, "init_from": first})
    state_b = train(task, model_b, cfg, d, resume=True, log=lambda m: None)
    assert state_b.step == state_a.step
    for (k, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert np.array_equal(a, b), k
    assert RunFolder.open(d).config["init"]["folder"] == os.path.abspath(first)


def test_cli_init_from_a_shipped_name_and_clean_errors(tmp_path):
    ok = minis2s("g2p", "train", "--out", "a", "--init-from", "distilled-t2", "--max-steps", "1", "--train-limit",
                 "300", "--quiet", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "starting from the weights of" in ok.stderr and "g2p-distilled-t2" in ok.stderr
    cfg = read_json(tmp_path / "a" / "config.json")
    assert cfg["train"]["init_from"] == "distilled-t2" and cfg["init"]["folder"].endswith("g2p-distilled-t2")
    p = minis2s("g2p", "train", "--out", "b", "--init-from", "ensemble", "--max-steps", "1", "--quiet", cwd=tmp_path)
    assert_clean_error(p, "--init-from", "ensemble of 6 models", last_line_only=True)
    p = minis2s("g2p", "train", "--out", "c", "--init-from", "attention", "--max-steps", "1", "--train-limit",
                "300", "--quiet", cwd=tmp_path)
    assert_clean_error(p, "init_from", "arch 'attention' (the run's: 'seq2seq')", last_line_only=True)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
