"""Model files that cannot mislead and inputs that cannot crash (issue 20): the strict weight
reader, model.json's sizes checked before anything is allocated, the folder digest, values
that do not fit the dtype, misshapen gradients, the beam's bound, deep JSON, a killed writer's
leftovers — and a property test that mutates the bytes of a model folder at random: loading
either gives exactly the original model or a CheckpointError naming the folder's file."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from conftest import SAME_SUMS_F64
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minis2s import safetensors as ours
from minis2s.checkpoint import (
    CheckpointError,
    read_checkpoint_state,
    read_model_dir,
    save_model_dir,
    seal_model_dir,
)
from minis2s.decode import MAX_BEAM, decode_batched
from minis2s.g2p import G2PTask
from minis2s.models.config import ModelConfig, build_model, parameter_shapes
from minis2s.nn import Parameter
from minis2s.optim import SGD, Adam
from minis2s.random import get_rng_state, manual_seed
from minis2s.translator import load_model

FUZZ_CASES = os.path.join(os.path.dirname(__file__), "data", "fuzz_model_folder")


def tiny_folder(path, *, arch="seq2seq", dtype="float32"):
    cfg = ModelConfig(arch=arch, hidden=8, layers=1, embedding=4, dtype=dtype)
    task = G2PTask(cfg, train_words={"cat": [("K", "AE", "T")]}, dev_words={})
    manual_seed(0)
    model = task.build_model()
    save_model_dir(path, model, {**task.describe(), "epoch": 1})
    return model


def _raw_safetensors(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


# ---- the weight file's header ----------------------------------------------------------------
EIGHT = np.arange(8, dtype=np.float32).tobytes()
BAD_HEADERS = {
    "overlapping offsets": {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                            "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
    "negative offset": {"a": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]},
                        "b": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}},
    "a -1 dimension": {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 16]},
                       "b": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}},
    "an int shape": {"a": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]},
                     "b": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}},
    "data not covered": {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
    "shape and range disagree": {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 32]}},
    "a dtype minis2s does not read": {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                      "b": {"dtype": "BF16", "shape": [8], "data_offsets": [16, 32]}},
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_a_lenient_header_is_refused_naming_the_file(tmp_path, case):
    path = tmp_path / "w.safetensors"
    path.write_bytes(_raw_safetensors(BAD_HEADERS[case], EIGHT))
    with pytest.raises(ValueError, match=str(path)):
        ours.load_file(path)


def test_the_header_is_read_without_the_data(tmp_path):
    """A header that promises 16 GiB over a sparse file: read_header answers at once, and
    load_file with the shapes the caller expects refuses before reading a byte of it."""
    n = 1 << 32  # float32 elements: 16 GiB
    path = tmp_path / "big.safetensors"
    head = _raw_safetensors({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}, b"")
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + 4 * n)  # sparse: no disk used
    t0 = time.perf_counter()
    assert ours.read_header(path) == {"w": (np.dtype(np.float32), (n,))}
    with pytest.raises(ValueError, match=r"tensor 'w' has shape \(4294967296,\), expected \(3,\)"):
        ours.load_file(path, expect={"w": (3,)})
    assert time.perf_counter() - t0 < 2.0


def test_written_files_are_the_reference_format(tmp_path):
    import safetensors.numpy

    arrays = {"w": np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32), "n": np.arange(4)}
    ours.save_file(arrays, tmp_path / "a.safetensors")
    back = safetensors.numpy.load_file(str(tmp_path / "a.safetensors"))
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)


# ---- model.json's sizes against the weights ---------------------------------------------------
@pytest.mark.parametrize("cfg", [
    ModelConfig(hidden=6, layers=2, embedding=3),
    ModelConfig(hidden=6, layers=3, embedding=3, cell="gru"),
    ModelConfig(hidden=6, layers=1, embedding=3, cell="rnn"),
    ModelConfig(arch="attention", hidden=6, layers=2, embedding=3, attention="bahdanau"),
    ModelConfig(arch="attention", hidden=6, layers=1, embedding=3, attention="dot", input_feeding=False),
    ModelConfig(arch="attention", hidden=8, layers=2, embedding=3, attention="general", dtype="float64"),
], ids=["lstm", "gru", "rnn", "bahdanau", "dot", "general-f64"])
def test_parameter_shapes_are_the_built_models_and_draw_nothing(cfg):
    manual_seed(3)
    before = get_rng_state()
    shapes = parameter_shapes(cfg, 11, 13)
    assert get_rng_state() == before  # minis2s's generator untouched: seeded runs stay as they were
    model = build_model(cfg, 11, 13)
    assert shapes == {k: tuple(p.shape) for k, p in model.named_parameters()}


def test_huge_sizes_are_refused_without_allocating(tmp_path):
    """The cases seen: hidden = 10**9 (a MemoryError traceback) and layers = 10**7 (3 GiB for
    40 s); and sizes within the bounds that do not match the weights (refused from the header,
    the model never built)."""
    folder = tmp_path / "m"
    tiny_folder(folder)
    meta = json.loads((folder / "model.json").read_text())
    for key, value, msg in [("hidden", 10**9, "hidden must be <= 65536"), ("layers", 10**7, "layers must be <= 256"),
                            ("hidden", 60000, "model.json's sizes give"), ("layers", 256, "model.json's sizes give")]:
        (folder / "model.json").write_text(json.dumps({**meta, "model": {**meta["model"], key: value}}))
        seal_model_dir(folder)  # edited by hand and vouched for: the sizes are checked all the same
        tracemalloc.start()
        t0 = time.perf_counter()
        with pytest.raises(CheckpointError, match=msg):
            load_model(folder)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert time.perf_counter() - t0 < 2.0 and peak < 20e6, (key, value, peak)


# ---- the folder's digest ------------------------------------------------------------------------
def test_a_changed_weight_or_description_is_refused_by_the_digest(tmp_path):
    folder = tmp_path / "m"
    tiny_folder(folder)
    w = ours.load_file(folder / "model.safetensors")
    w["decoder.fc_out.bias"][0] += 0.5  # a plausible weight, a different model
    ours.save_file(w, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="digest"):
        load_model(folder)
    tiny_folder(folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["vocab"]["trg"][3], meta["vocab"]["trg"][4] = meta["vocab"]["trg"][4], meta["vocab"]["trg"][3]
    (folder / "model.json").write_text(json.dumps(meta))  # two phonemes swapped: silently wrong answers
    with pytest.raises(CheckpointError, match="digest"):
        load_model(folder)
    tiny_folder(folder)
    (folder / "model.json").write_text(json.dumps(json.loads((folder / "model.json").read_text()), indent=4))
    load_model(folder)  # the same content written another way is the same model
    meta = json.loads((folder / "model.json").read_text())
    del meta["digest"]  # deleting the digest would let any other change through: refused too
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="has no digest"):
        load_model(folder)


def test_seal_vouches_for_a_folder_edited_by_hand(tmp_path):
    folder = tmp_path / "m"
    tiny_folder(folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["epoch"] = 7
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"minis2s seal {folder}"):  # the error says what to do
        load_model(folder)
    p = subprocess.run([sys.executable, "-m", "minis2s", "seal", str(folder)], capture_output=True, check=False, text=True)
    assert p.returncode == 0 and p.stdout.split("\t")[1].startswith("sha256:"), p.stderr
    assert load_model(folder).meta["epoch"] == 7
    p = subprocess.run([sys.executable, "-m", "minis2s", "seal", str(tmp_path / "nowhere")], capture_output=True, check=False,
                       text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "does not exist" in p.stderr, p.stderr


def test_the_shipped_models_carry_their_digest():
    from minis2s.g2p import PRETRAINED_MODELS

    for folder in PRETRAINED_MODELS.values():
        meta, _ = read_model_dir(folder)
        assert meta["digest"].startswith("sha256:")


def test_every_shipped_model_folder_stays_under_5_mb():
    """The brief's bound on shipped model files (each file of each folder, ≤ 5 MB)."""
    from minis2s.g2p import PRETRAINED_MODELS

    for name, folder in PRETRAINED_MODELS.items():
        for f in os.listdir(folder):
            size = os.path.getsize(os.path.join(folder, f))
            assert size <= 5 * 1000 * 1000, f"{name}: {f} is {size:,} bytes"


# ---- values, gradients, decoding ---------------------------------------------------------------
def test_float64_weights_beyond_float32_are_refused(tmp_path):
    model = build_model(ModelConfig(hidden=4, layers=1, embedding=3), 9, 9)
    sd = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    sd["decoder.fc_out.bias"][1] = 1e300  # finite in float64, inf in float32
    before = model.state_dict()["decoder.fc_out.bias"].copy()
    with pytest.raises(ValueError, match=r"decoder.fc_out.bias.*beyond float32's range.*1e\+300"):
        model.load_state_dict(sd)
    assert np.array_equal(model.state_dict()["decoder.fc_out.bias"], before)  # nothing changed


@pytest.mark.parametrize("opt", [Adam, SGD])
def test_optimisers_refuse_a_misshapen_gradient(opt):
    rng = np.random.default_rng(0)
    a, b = Parameter(rng.standard_normal((3, 4))), Parameter(rng.standard_normal(4))
    a.grad, b.grad = rng.standard_normal((3, 4)), rng.standard_normal((1,))  # b's would broadcast
    old = a.data.copy(), b.data.copy()
    o = opt([a, b], lr=0.1)
    with pytest.raises(ValueError, match=r"params\[1\].grad has shape \(1,\), but the parameter has shape \(4,\)"):
        o.step()
    assert np.array_equal(a.data, old[0]) and np.array_equal(b.data, old[1])  # checked before any update


def test_the_beam_is_bounded_and_a_wide_beam_decodes_fewer_rows_at_once():
    manual_seed(0)
    model = build_model(ModelConfig(hidden=8, layers=1, embedding=4, dtype="float64", dropout=0.0), 7, 9).eval()
    rng = np.random.default_rng(1)
    sources = [list(rng.integers(4, 7, size=int(n))) for n in rng.integers(2, 6, size=12)]
    with pytest.raises(ValueError, match=f"beam must be at most {MAX_BEAM}"):
        decode_batched(model, sources, sos_id=1, eos_id=2, beam=10000)
    # beam 512 decodes 8 rows at a time (4096 hypotheses): the same answers as one row at a time
    wide = decode_batched(model, sources, sos_id=1, eos_id=2, beam=512, nbest=3, max_len=6)
    alone = [decode_batched(model, [s], sos_id=1, eos_id=2, beam=512, nbest=3, max_len=6)[0] for s in sources]
    assert [[h for h, _ in r] for r in wide] == [[h for h, _ in r] for r in alone]
    np.testing.assert_allclose([[s for _, s in r] for r in wide], [[s for _, s in r] for r in alone], rtol=SAME_SUMS_F64)


def test_deeply_nested_json_is_a_checkpoint_error(tmp_path):
    folder = tmp_path / "m"
    tiny_folder(folder)
    (folder / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="model.json"):
        load_model(folder)
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "state.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(CheckpointError, match="state.json"):
        read_checkpoint_state(ck)


def test_a_killed_writers_leftovers_are_removed_by_the_next_write(tmp_path):
    """A SIGKILL inside a save leaves its temporary folder (and file) behind; the next save of
    the same folder removes them — and never a live writer's."""
    folder = tmp_path / "m"
    code = ("import os, sys; from minis2s import checkpoint, atomic\n"
            "real = atomic.atomic_write_json\n"
            "def die(*a, **k): os.kill(os.getpid(), 9)\n"
            "checkpoint.atomic_write_json = die\n"
            "sys.path.insert(0, sys.argv[2]); from test_reliability import tiny_folder; tiny_folder(sys.argv[1])\n")
    p = subprocess.run([sys.executable, "-c", code, str(folder), os.path.dirname(__file__)], capture_output=True, check=False)
    assert p.returncode == -9, p.stderr.decode()
    left = [d for d in os.listdir(tmp_path) if d.startswith(".m.new-")]
    assert len(left) == 1 and not os.path.exists(folder)
    live = tmp_path / f".m.new-{os.getpid()}-abcd"  # a live writer's (this process's pid)
    live.mkdir()
    tiny_folder(folder)
    assert sorted(os.listdir(tmp_path)) == sorted(["m", live.name])


# ---- the property: mutate a byte, load, and see -------------------------------------------------
@pytest.fixture(scope="module")
def original(tmp_path_factory):
    folder = tmp_path_factory.mktemp("orig") / "m"
    model = tiny_folder(folder, arch="attention")
    files = {name: (folder / name).read_bytes() for name in ("model.json", "model.safetensors")}
    return folder, model.state_dict(), load_model(folder).meta, files


def check_loads_the_original_or_refuses(folder, weights, meta, name):
    """The property: exactly the original model, or a CheckpointError that names the file or
    the folder. Any other exception propagates and fails the test."""
    try:
        t = load_model(folder)
    except CheckpointError as e:
        assert str(folder) in str(e), str(e)
        return "refused"
    assert t.meta == meta, f"a mutation of {name} loaded a different description"
    got = t.model.state_dict()
    assert set(got) == set(weights) and all(np.array_equal(got[k], weights[k]) for k in weights), \
        f"a mutation of {name} loaded different weights"
    return "original"


def mutate(data: bytes, kind: str, pos: int, value: int) -> bytes:
    i = pos % (len(data) + 1)
    if kind == "set":
        i = min(i, len(data) - 1)
        return data[:i] + bytes([value if value != data[i] else (value + 1) % 256]) + data[i + 1:]
    if kind == "flip":
        i = min(i, len(data) - 1)
        return data[:i] + bytes([data[i] ^ (1 << (value % 8))]) + data[i + 1:]
    if kind == "insert":
        return data[:i] + bytes([value]) + data[i:]
    if kind == "delete":
        return data[:i] + data[i + 1:]
    return data[:i]  # truncate


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["model.json", "model.safetensors"]),
       kind=st.sampled_from(["set", "flip", "insert", "delete", "truncate"]),
       pos=st.one_of(st.integers(0, 200), st.integers(0, 1 << 20)), value=st.integers(0, 255))
def test_a_mutated_model_folder_loads_as_the_original_or_is_refused(original, name, kind, pos, value):
    folder, weights, meta, files = original
    try:
        (folder / name).write_bytes(mutate(files[name], kind, pos, value))
        check_loads_the_original_or_refuses(folder, weights, meta, name)
    finally:
        (folder / name).write_bytes(files[name])


def test_the_fuzzers_findings_stay_fixed(original):
    """Each file under tests/data/fuzz_model_folder/ is an input the atheris fuzzer
    (tests/fuzz_model_folder.py) once found: FILE_NAME--anything, the bytes to put in FILE_NAME."""
    folder, weights, meta, files = original
    cases = sorted(os.listdir(FUZZ_CASES)) if os.path.isdir(FUZZ_CASES) else []
    assert cases, "the fuzzer's regression cases are missing"
    for case in cases:
        name = case.split("--")[0]
        with open(os.path.join(FUZZ_CASES, case), "rb") as f:
            data = f.read()
        try:
            (folder / name).write_bytes(data)
            check_loads_the_original_or_refuses(folder, weights, meta, name)
        finally:
            (folder / name).write_bytes(files[name])


# ---- a resumed run's files ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run_once(tmp_path_factory):
    """A G2P run of 4 steps (a checkpoint at its end), made through the CLI."""
    run = tmp_path_factory.mktemp("run") / "run"
    p = subprocess.run([sys.executable, "-m", "minis2s", "g2p", "train", "--out", str(run), "--max-steps", "4",
                        "--train-limit", "64", "--hidden", "8", "--layers", "1", "--embedding", "4",
                        "--batch-size", "16", "--quiet"], capture_output=True, check=False, text=True)
    assert p.returncode == 0, p.stderr
    return run


@pytest.fixture
def tiny_run(tiny_run_once, tmp_path):
    """A copy of that run for one test to damage."""
    import shutil

    return shutil.copytree(tiny_run_once, tmp_path / "run")


def _resume(run):
    return subprocess.run([sys.executable, "-m", "minis2s", "g2p", "train", "--out", str(run), "--resume",
                           "--max-steps", "5", "--quiet"], capture_output=True, check=False, text=True)


def test_a_resumed_run_checks_config_json_against_its_checkpoint_before_allocating(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    config["task"]["model"]["hidden"] = 60000  # within the bounds: 57 GB of LSTM weights if built
    (tiny_run / "config.json").write_text(json.dumps(config))
    t0 = time.perf_counter()
    p = _resume(tiny_run)
    assert p.returncode == 2 and time.perf_counter() - t0 < 30, p.stderr
    assert p.stderr.count("\n") == 1 and "has shape" in p.stderr and "config.json's model settings" in p.stderr


@pytest.mark.parametrize("name,text,msg", [
    ("config.json", "[" * 100_000, "config.json is not valid JSON"),
    ("config.json", '{"task": 1}', "config.json is damaged"),
    ("changes.jsonl", '{"set": {"epochs": 3}}\n{"set": ', "changes.jsonl, line 2 is not valid JSON"),
    ("changes.jsonl", "[1]\n", "change 1 is not an object"),
    ("checkpoints/index.json", '{"checkpoints": 5}', "index.json is damaged"),
])
def test_damaged_run_files_are_one_line_naming_the_file(tiny_run, name, text, msg):
    (tiny_run / name).write_text(text)
    p = _resume(tiny_run)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and msg in p.stderr, p.stderr
