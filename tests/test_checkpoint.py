"""Safetensors I/O, atomic writes, model folders and training checkpoints.

- our safetensors writer's files are read by the reference ``safetensors`` package (NumPy and
  torch loaders) and load strictly into the torch twin (tests/torch_seed.py); files written by the reference
  writer are read by ours; a truncated or corrupt file is a ValueError naming the file;
- a crash in the middle of a checkpoint save (``RunFolder.save_checkpoint``: os.replace /
  os.rename / fsync raising after the temp file is written) leaves the previous checkpoint the
  latest in RUN/checkpoints/index.json, intact and loadable, and no partial file under the
  target's name;
- model folders refuse, with a CheckpointError, a missing folder, garbage weights, bad JSON and
  weights of the wrong shape.
"""
import json
import os

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from conftest import load_seed_skeleton
from torch_seed import make_seed_model

from minis2s import atomic
from minis2s import safetensors as ours
from minis2s.checkpoint import (
    CheckpointError,
    load_weights,
    read_model_dir,
    save_model_dir,
    seal_model_dir,
)
from minis2s.g2p import G2P, G2PTask
from minis2s.models import Decoder, Encoder, ModelConfig, Seq2Seq
from minis2s.optim import Adam
from minis2s.random import manual_seed
from minis2s.training import RunFolder

SV, TV, H, E, L = 30, 43, 6, 4, 2


def make_model(seed=0, dtype=np.float32):
    manual_seed(seed)
    return Seq2Seq(Encoder(SV, H, E, L, dtype=dtype), Decoder(TV, H, E, L, dtype=dtype), "cpu")


def assert_same_arrays(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert np.array_equal(a[k], b[k]), k


# ---- safetensors: interoperability ----------------------------------------------------------------
ALL_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_]


def various_arrays(rng):
    out = {}
    for dt in ALL_DTYPES:
        a = rng.normal(size=(3, 4)) * 50
        out[f"t_{np.dtype(dt).name}"] = (a > 0) if dt is np.bool_ else a.astype(dt)
    out["scalar"] = np.array(3.5)
    out["empty"] = np.zeros((0, 5), dtype=np.float32)
    out["vector"] = np.arange(7, dtype=np.int64)
    out["noncontig"] = np.arange(12, dtype=np.float64).reshape(3, 4).T  # Fortran order in memory
    return out


def test_our_files_are_read_by_the_safetensors_package(tmp_path, rng):
    arrays = various_arrays(rng)
    path = tmp_path / "a.safetensors"
    ours.save_file(arrays, path, metadata={"format": "np", "n": 3})
    got = safetensors.numpy.load_file(str(path))
    assert_same_arrays(arrays, got)
    assert got["scalar"].shape == () and got["empty"].shape == (0, 5)
    got_t = safetensors.torch.load_file(str(path))
    for k, v in arrays.items():
        assert np.array_equal(got_t[k].numpy(), v), k
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        assert f.metadata() == {"format": "np", "n": "3"}
    assert ours.load_file(path).keys() == arrays.keys()


def test_files_of_the_safetensors_package_are_read_by_ours(tmp_path, rng):
    arrays = {k: np.ascontiguousarray(v).reshape(v.shape) for k, v in various_arrays(rng).items()}
    path = tmp_path / "ref.safetensors"
    safetensors.numpy.save_file(arrays, str(path), metadata={"who": "reference"})
    assert_same_arrays(arrays, ours.load_file(path))
    tpath = tmp_path / "ref_torch.safetensors"
    safetensors.torch.save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, str(tpath))
    assert np.array_equal(ours.load_file(tpath)["w"], np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("dtype,tdtype", [(np.float32, torch.float32), (np.float64, torch.float64)])
def test_model_weights_load_into_the_seeds_torch_model_strictly(tmp_path, dtype, tdtype):
    model = make_model(1, dtype)
    path = tmp_path / "model.safetensors"
    ours.save_file(model.state_dict(), path)
    tm = make_seed_model(SV, TV, H, E, L, dtype=tdtype)
    result = tm.load_state_dict(safetensors.torch.load_file(str(path)), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in model.state_dict().items():
        assert np.array_equal(tm.state_dict()[k].numpy(), v), k
    # and back: the torch model's weights, saved by the reference writer, load into ours
    tpath = tmp_path / "torch.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(tpath))
    other = make_model(2, dtype)
    other.load_state_dict(ours.load_file(tpath))
    assert_same_arrays(model.state_dict(), other.state_dict())


def test_model_weights_load_into_the_users_skeleton_file(tmp_path):
    """The user's own skeleton file (tests/data/seed_skeleton.py, shared/seed_skeleton.py byte for
    byte), imported as it is (not the test twin)."""
    sk = load_seed_skeleton()
    model = make_model(3)
    ours.save_file(model.state_dict(), tmp_path / "model.safetensors")
    tm = sk.Seq2Seq(sk.Encoder(SV, H, E, L), sk.Decoder(TV, H, E, L), "cpu")
    tm.load_state_dict(safetensors.torch.load_file(str(tmp_path / "model.safetensors")), strict=True)
    for k, v in model.state_dict().items():
        assert np.array_equal(tm.state_dict()[k].numpy(), v), k


def test_model_dir_weights_are_the_seeds_parameter_names(tmp_path):
    """A G2P model folder (what the CLI writes and ships) loads into the torch twin."""
    cfg = ModelConfig(hidden=8, layers=2, embedding=4)
    task = G2PTask(cfg, train_words={"cat": [("K", "AE", "T")]}, dev_words={})
    model = task.build_model()
    save_model_dir(tmp_path / "m", model, task.describe())
    tm = make_seed_model(len(task.src_vocab), len(task.trg_vocab), 8, 4, 2, dtype=torch.float32)
    tm.load_state_dict(safetensors.torch.load_file(str(tmp_path / "m" / "model.safetensors")), strict=True)
    assert G2P(str(tmp_path / "m"))(["cat"])  # and minis2s reads it back


# ---- safetensors: corrupt files ------------------------------------------------------------------
def _corrupt(tmp_path, data: bytes):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(data)
    return p


def good_bytes(tmp_path):
    p = tmp_path / "good.safetensors"
    ours.save_file({"w": np.arange(20, dtype=np.float32).reshape(4, 5), "b": np.ones(3)}, p)
    return p.read_bytes()


def _header(obj) -> bytes:
    h = json.dumps(obj).encode()
    return len(h).to_bytes(8, "little") + h


@pytest.mark.parametrize("case", [
    "empty", "short-length", "truncated-header", "truncated-data", "huge-header-length", "garbage",
    "not-json", "header-is-a-list", "unknown-dtype", "shape-mismatch", "offsets-reversed", "entry-not-a-dict",
])
def test_corrupt_files_are_a_clear_value_error(tmp_path, case):
    good = good_bytes(tmp_path)
    data = {
        "empty": b"",
        "short-length": b"\x05\x00\x00",
        "truncated-header": good[:20],
        "truncated-data": good[:-7],
        "huge-header-length": (10**12).to_bytes(8, "little") + good[8:],
        "garbage": os.urandom(256),
        "not-json": (12).to_bytes(8, "little") + b"{not json!!}",
        "header-is-a-list": _header([1, 2, 3]),
        "unknown-dtype": _header({"w": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 4,
        "shape-mismatch": _header({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 4]}}) + b"\0" * 4,
        "offsets-reversed": _header({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}) + b"\0" * 4,
        "entry-not-a-dict": _header({"w": 7}),
    }[case]
    p = _corrupt(tmp_path, data)
    with pytest.raises(ValueError, match="not a valid safetensors file") as e:
        ours.load_file(p)
    assert str(p) in str(e.value)


def test_writer_refuses_unstorable_dtypes(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        ours.save_file({"c": np.zeros(2, dtype=np.complex128)}, tmp_path / "c.safetensors")
    assert not (tmp_path / "c.safetensors").exists()


# ---- atomic writes -------------------------------------------------------------------------------
class Crash(Exception):
    """The simulated crash."""


def crash_on(monkeypatch, module_attr, after=0):
    """Make ``os.<name>`` raise Crash on its call number ``after`` (0-based); earlier calls pass."""
    name = module_attr
    real = getattr(os, name)
    calls = [0]

    def fake(*a, **k):
        calls[0] += 1
        if calls[0] - 1 == after:
            raise Crash(f"simulated crash in os.{name}")
        return real(*a, **k)

    monkeypatch.setattr(os, name, fake)
    return calls


def leftovers(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith(".tmp"))


@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_atomic_write_crash_keeps_the_old_file(tmp_path, monkeypatch, where):
    target = tmp_path / "f.bin"
    atomic.atomic_write_bytes(target, b"old contents")
    crash_on(monkeypatch, where)
    with pytest.raises(Crash):
        atomic.atomic_write_bytes(target, b"new contents that never land")
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert leftovers(tmp_path) == []  # the temp file is cleaned up
    atomic.atomic_write_bytes(target, b"new")  # and the next write works
    assert target.read_bytes() == b"new"


def test_atomic_write_crash_before_the_first_save_leaves_no_file(tmp_path, monkeypatch):
    crash_on(monkeypatch, "replace")
    with pytest.raises(Crash):
        ours.save_file({"w": np.ones(3)}, tmp_path / "w.safetensors")
    assert os.listdir(tmp_path) == []


def _train_a_bit(model, opt, rng, steps=2):
    for _ in range(steps):
        for p in model.parameters():
            p.grad = rng.normal(size=p.data.shape).astype(p.data.dtype)
        opt.step()


def _checkpoint_files(run):
    return sorted(os.listdir(run / "checkpoints"))


def _index(run):
    return json.loads((run / "checkpoints" / "index.json").read_text())


def _new_run(path):
    return RunFolder.create(path, {"train": {}, "note": "a run folder for the checkpoint tests"})


# Every way a checkpoint save can be cut short: (os function, which call of it raises).
# RunFolder.save_checkpoint calls os.replace three times (model.safetensors,
# optimizer.safetensors, state.json inside the temp folder), then os.rename (temp folder ->
# step-N), then os.replace once more (checkpoints/index.json). An fsync crash hits the first
# file write.
CRASH_POINTS = [("replace", 0), ("replace", 1), ("replace", 2), ("rename", 0), ("replace", 3), ("fsync", 0)]


@pytest.mark.parametrize("name,after", CRASH_POINTS, ids=[f"{n}-{a}" for n, a in CRASH_POINTS])
def test_checkpoint_crash_keeps_the_previous_checkpoint(tmp_path, monkeypatch, rng, name, after):
    path = tmp_path / "run"
    run = _new_run(path)
    model = make_model(0)
    opt = Adam(model.parameters(), lr=1e-3)
    _train_a_bit(model, opt, rng)
    run.save_checkpoint(model, opt, {"step": 10, "epoch": 0, "note": "good"}, keep=2)
    good_w = model.state_dict()
    good_opt = opt.state_dict()
    _train_a_bit(model, opt, rng)
    assert not np.array_equal(model.state_dict()["decoder.fc_out.weight"], good_w["decoder.fc_out.weight"])
    crash_on(monkeypatch, name, after)
    with pytest.raises(Crash):
        run.save_checkpoint(model, opt, {"step": 20, "epoch": 0, "note": "crashed"}, keep=2)
    monkeypatch.undo()
    ck = path / "checkpoints"
    assert _index(path) == {"checkpoints": [{"step": 10, "dir": "step-00000010"}]}
    assert run.latest() == str(ck / "step-00000010")
    # no partial file under a final name: the crashed step is either absent or complete
    if (ck / "step-00000020").exists():
        assert sorted(os.listdir(ck / "step-00000020")) == ["model.safetensors", "optimizer.safetensors", "state.json"]
    assert not [f for f in os.listdir(ck) if f.startswith(".index.json")]
    assert not [f for f in os.listdir(ck) if f.startswith(".")]  # no temp file or folder visible
    # the previous checkpoint loads, with the previous weights and optimiser state: from this
    # RunFolder, and from the run opened again (as a resume does, repairing what the crash left)
    for which in (run, RunFolder.open(path)):
        assert which.latest() == str(ck / "step-00000010")
        fresh = make_model(5)
        fresh_opt = Adam(fresh.parameters(), lr=0.5)
        folder, state = which.load_latest(fresh, fresh_opt)
        assert folder == str(ck / "step-00000010")
        assert state["step"] == 10 and state["note"] == "good"
        assert_same_arrays(good_w, fresh.state_dict())
        assert fresh_opt.lr == good_opt["lr"]
        for a, b in zip(good_opt["state"], fresh_opt.state_dict()["state"]):
            assert a["step"] == b["step"]
            assert np.array_equal(a["exp_avg"], b["exp_avg"]) and np.array_equal(a["exp_avg_sq"], b["exp_avg_sq"])
    # and the next save after the crash works and becomes the latest
    run.save_checkpoint(model, opt, {"step": 20, "epoch": 0, "note": "retried"}, keep=2)
    assert _index(path) == {"checkpoints": [{"step": 10, "dir": "step-00000010"},
                                            {"step": 20, "dir": "step-00000020"}]}
    other = make_model(6)
    _, state = RunFolder.open(path).load_latest(other, Adam(other.parameters()))
    assert state["note"] == "retried"
    assert_same_arrays(model.state_dict(), other.state_dict())
    assert not [d for d in os.listdir(ck) if d.startswith(".")]  # no temp or aside folders left


def test_checkpoints_keep_the_newest_two(tmp_path, rng):
    path = tmp_path / "run"
    run = _new_run(path)
    model = make_model(0)
    opt = Adam(model.parameters())
    for step in (1, 2, 3, 4):
        _train_a_bit(model, opt, rng, 1)
        run.save_checkpoint(model, opt, {"step": step}, keep=2)
    assert _checkpoint_files(path) == ["index.json", "step-00000003", "step-00000004"]
    assert _index(path) == {"checkpoints": [{"step": 3, "dir": "step-00000003"}, {"step": 4, "dir": "step-00000004"}]}
    assert run.latest() == str(path / "checkpoints" / "step-00000004")
    # the newest by step, not by the order of the saves: an older step saved last is pruned
    run.save_checkpoint(model, opt, {"step": 2}, keep=2)
    assert _checkpoint_files(path) == ["index.json", "step-00000003", "step-00000004"]
    assert [c["step"] for c in _index(path)["checkpoints"]] == [3, 4]


# save_model_dir writes model.safetensors (os.replace 0) and model.json (os.replace 1) into a temp
# folder, renames the old folder aside (os.rename 0) and the temp folder into place (os.rename 1).
MODEL_DIR_CRASHES = [("replace", 0), ("fsync", 0), ("replace", 1), ("rename", 0)]


def _two_models():
    cfg = ModelConfig(hidden=8, layers=1, embedding=4)
    task = G2PTask(cfg, train_words={"cat": [("K", "AE", "T")]}, dev_words={})
    manual_seed(0)
    old = task.build_model()
    manual_seed(1)
    new = task.build_model()
    assert not np.array_equal(old.state_dict()["decoder.fc_out.weight"], new.state_dict()["decoder.fc_out.weight"])
    return task, old, new


@pytest.mark.parametrize("name,after", MODEL_DIR_CRASHES, ids=[f"{n}-{a}" for n, a in MODEL_DIR_CRASHES])
def test_save_model_dir_crash_leaves_the_previous_folder(tmp_path, monkeypatch, name, after):
    """Weights and description are swapped in as a pair: a crash anywhere before the final
    rename leaves the previous folder whole — its own weights beside its own model.json — and no
    temp folder behind."""
    task, old, new = _two_models()
    folder = tmp_path / "best"
    save_model_dir(folder, old, {**task.describe(), "epoch": 1})
    crash_on(monkeypatch, name, after)
    with pytest.raises(Crash):
        save_model_dir(folder, new, {**task.describe(), "epoch": 2})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["best"]
    assert sorted(os.listdir(folder)) == ["model.json", "model.safetensors"]
    meta, weights = read_model_dir(folder)
    assert meta["epoch"] == 1
    assert_same_arrays(old.state_dict(), weights)
    G2P(str(folder))(["cat"])  # loads and predicts
    save_model_dir(folder, new, {**task.describe(), "epoch": 2})  # the next save works
    meta, weights = read_model_dir(folder)
    assert meta["epoch"] == 2
    assert_same_arrays(new.state_dict(), weights)
    assert os.listdir(tmp_path) == ["best"]


def test_save_model_dir_crash_between_the_renames_keeps_the_old_folder_aside(tmp_path, monkeypatch):
    """The one instant the folder is missing: the old one is complete under its aside name, and
    reading the folder says where it is."""
    task, old, new = _two_models()
    folder = tmp_path / "best"
    save_model_dir(folder, old, {**task.describe(), "epoch": 1})
    crash_on(monkeypatch, "rename", 1)
    with pytest.raises(Crash):
        save_model_dir(folder, new, {**task.describe(), "epoch": 2})
    monkeypatch.undo()
    (aside,) = atomic.leftover_folders(folder)
    assert not folder.exists() and os.path.basename(aside).startswith(".best.old-")
    with pytest.raises(CheckpointError, match="interrupted save left the previous one at"):
        read_model_dir(folder)
    meta, weights = read_model_dir(aside)
    assert meta["epoch"] == 1
    assert_same_arrays(old.state_dict(), weights)


# ---- model folders: refusals ---------------------------------------------------------------------
@pytest.fixture
def model_dir(tmp_path):
    cfg = ModelConfig(hidden=8, layers=1, embedding=4)
    task = G2PTask(cfg, train_words={"cat": [("K", "AE", "T")]}, dev_words={})
    manual_seed(0)
    folder = tmp_path / "m"
    save_model_dir(folder, task.build_model(), task.describe())
    return folder


def _edit_meta(folder, fn):
    meta = json.loads((folder / "model.json").read_text())
    fn(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    seal_model_dir(folder)  # edited by hand and vouched for: its content is still checked


def _set(path, value):
    def fn(meta):
        d = meta
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return fn


@pytest.mark.parametrize("case,msg", [
    ("missing-folder", "does not exist"),
    ("no-weights", "has no model.safetensors"),
    ("no-meta", "has no model.json"),
    ("garbage-weights", "not a valid safetensors file"),
    ("truncated-weights", "not a valid safetensors file"),
    ("bad-json", "not valid JSON"),
    ("json-not-an-object", "model.json"),
    ("wrong-hidden", "model.json.s sizes give"),
    ("wrong-layers", "model.json.s sizes give"),
    ("wrong-vocab", "model.json.s sizes give"),
    ("unknown-setting", r"unknown ModelConfig settings \['wormholes'\]"),
    ("wrong-task", "not 'g2p'"),
    ("no-vocab", "incomplete or invalid"),
    ("bad-cell", "incomplete or invalid"),
    ("nan-weights", "NaN"),
])
def test_bad_model_folders_are_a_checkpoint_error(model_dir, case, msg):
    f = model_dir
    if case == "missing-folder":
        f = model_dir.parent / "nope"
    elif case == "no-weights":
        os.remove(f / "model.safetensors")
    elif case == "no-meta":
        os.remove(f / "model.json")
    elif case == "garbage-weights":
        (f / "model.safetensors").write_bytes(b"this is not a safetensors file at all")
    elif case == "truncated-weights":
        data = (f / "model.safetensors").read_bytes()
        (f / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif case == "bad-json":
        (f / "model.json").write_text('{"task": "g2p", "model": ')
    elif case == "json-not-an-object":
        (f / "model.json").write_text("[1, 2, 3]")
    elif case == "wrong-hidden":
        _edit_meta(f, _set(["model", "hidden"], 16))
    elif case == "wrong-layers":
        _edit_meta(f, _set(["model", "layers"], 2))
    elif case == "wrong-vocab":
        _edit_meta(f, _set(["vocab", "src"], list("abc")))
    elif case == "unknown-setting":
        _edit_meta(f, _set(["model", "wormholes"], True))
    elif case == "wrong-task":
        _edit_meta(f, _set(["task"], "demo-reverse"))
    elif case == "no-vocab":
        _edit_meta(f, lambda m: m.pop("vocab"))
    elif case == "bad-cell":
        _edit_meta(f, _set(["model", "cell"], "transformer"))
    elif case == "nan-weights":
        w = ours.load_file(f / "model.safetensors")
        w["decoder.fc_out.bias"][0] = np.nan
        ours.save_file(w, f / "model.safetensors")
        _edit_meta(f, lambda meta: None)
    with pytest.raises(CheckpointError, match=msg):
        G2P(str(f))


def test_load_weights_wraps_shape_and_key_errors():
    model = make_model(0)
    sd = model.state_dict()
    sd["encoder.embedding.weight"] = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_weights(model, sd, "here")
    sd = model.state_dict()
    sd.pop("decoder.fc_out.bias")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_weights(model, sd, "here")


def test_load_checkpoint_without_a_checkpoint_is_a_checkpoint_error(tmp_path):
    model = make_model(0)
    run = _new_run(tmp_path / "run")
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        run.load_latest(model, Adam(model.parameters()))
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        RunFolder.open(tmp_path / "run").load_latest(model, Adam(model.parameters()))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no run"):  # a folder without a run at all
        RunFolder.open(tmp_path / "empty")


def test_a_model_folder_never_replaces_a_file(tmp_path):
    task, old, _ = _two_models()
    target = tmp_path / "notes.txt"
    target.write_text("a user's file")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        save_model_dir(target, old, task.describe())
    assert target.read_text() == "a user's file"
    assert os.listdir(tmp_path) == ["notes.txt"]
