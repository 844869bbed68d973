"""`minis2s g2p export`: float16, int8 and int4 copies of a model folder shrink the weights and load back.

int8 bound: every weight of a matrix row r comes back within half a quantisation step s_r / 2,
s_r = max|row| / 127 (minis2s/quantize.py); the test checks that bound, and that it is tight
enough to matter (the error is not zero, and a coarser 6-bit code would break it). int4: the
grid of the group's float16 scale s_g (16 weights of a row), the scale of least squared error
of candidates that include max|group| / 7, so never worse than that plain scale."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minis2s import manual_seed, safetensors
from minis2s.checkpoint import (
    CheckpointError,
    average_model_dirs,
    export_model_dir,
    read_model_dir,
    save_model_dir,
    seal_model_dir,
)
from minis2s.data import Vocab
from minis2s.g2p import G2P, LETTERS, PHONEMES
from minis2s.models import ModelConfig, build_model
from minis2s.quantize import INT4_GROUP, INT4_SCALE_SUFFIX, SCALE_SUFFIX, dequantize_int4, quantize_int4

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def describe(cfg: ModelConfig) -> dict:
    """A G2P model.json of the 26 letters and 39 phonemes (the shipped models' format)."""
    return {"task": "g2p", "model": cfg.to_dict(), "vocab": {"src": LETTERS, "trg": PHONEMES}}


def g2p_model(cfg: ModelConfig):
    return build_model(cfg, len(Vocab(LETTERS)), len(Vocab(PHONEMES)))


def _tiny_model_dir(path, hidden=8, embedding=4):
    cfg = ModelConfig(hidden=hidden, layers=1, embedding=embedding, dropout=0.0)
    manual_seed(3)
    model = g2p_model(cfg)
    save_model_dir(path, model, describe(cfg))
    return model


def test_float16_export_halves_the_weights_and_rounds_them_to_half(tmp_path):
    model = _tiny_model_dir(tmp_path / "full")
    export_model_dir(tmp_path / "full", tmp_path / "half", stored_dtype="float16")
    full = os.path.getsize(tmp_path / "full" / "model.safetensors")
    half = os.path.getsize(tmp_path / "half" / "model.safetensors")
    assert half < 0.6 * full
    meta, weights = read_model_dir(tmp_path / "half")
    assert meta["stored_dtype"] == "float16"
    for name, p in model.named_parameters():
        assert weights[name].dtype == np.float16
        np.testing.assert_array_equal(weights[name], p.data.astype(np.float16))
    loaded = G2P(str(tmp_path / "half"))
    for name, p in loaded.model.named_parameters():  # cast back to the model's float32 on load
        assert p.data.dtype == np.float32
        np.testing.assert_array_equal(p.data, weights[name].astype(np.float32))


def test_int8_export_quarters_the_weights_within_half_a_step_per_row(tmp_path):
    model = _tiny_model_dir(tmp_path / "full", hidden=64, embedding=32)  # rows long enough that scales are small
    meta = export_model_dir(tmp_path / "full", tmp_path / "q", stored_dtype="int8")
    assert meta["stored_dtype"] == "int8"
    stored = safetensors.load_file(tmp_path / "q" / "model.safetensors")
    full = sum(p.data.nbytes for p in model.parameters())
    assert sum(t.nbytes for t in stored.values()) < 0.35 * full  # 1/4, plus the scales and float16 biases
    _, weights = read_model_dir(tmp_path / "q")
    assert set(weights) == {name for name, _ in model.named_parameters()}  # the scales are folded back in
    for name, p in model.named_parameters():
        w = p.data.astype(np.float64)
        if w.ndim == 1:  # biases stay float16
            assert stored[name].dtype == np.float16
            np.testing.assert_array_equal(weights[name], p.data.astype(np.float16).astype(np.float32))
            continue
        assert stored[name].dtype == np.int8 and np.abs(stored[name]).max() == 127  # each row's max uses the range
        step = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / 127  # (R,)
        err = np.abs(weights[name].astype(np.float64) - w).reshape(w.shape[0], -1)
        assert (err <= step[:, None] / 2 * (1 + 1e-6)).all(), name  # float32 scale: a hair of slack
        assert err.max() > 0 and (err.max(axis=1) <= step / 2 * (1 + 1e-6)).all()
        assert err.max() < np.abs(w).max() / 63 / 2  # finer than a 6-bit code could be
    loaded = G2P(str(tmp_path / "q"))
    for name, p in loaded.model.named_parameters():
        assert p.data.dtype == np.float32
        np.testing.assert_array_equal(p.data, weights[name])


def test_int8_folder_with_a_missing_scale_is_a_clean_error(tmp_path):
    _tiny_model_dir(tmp_path / "full")
    export_model_dir(tmp_path / "full", tmp_path / "q", stored_dtype="int8")
    path = tmp_path / "q" / "model.safetensors"
    stored = safetensors.load_file(path)
    del stored["decoder.fc_out.weight" + SCALE_SUFFIX]
    safetensors.save_file(stored, path)
    with pytest.raises(CheckpointError, match="digest"):  # the folder's digest refuses any change
        read_model_dir(tmp_path / "q")
    seal_model_dir(tmp_path / "q")  # vouched for: the scales are checked
    with pytest.raises(CheckpointError, match="decoder.fc_out.weight"):
        read_model_dir(tmp_path / "q")


def _int4_grid(w, scale):
    """w (R, C) on the grid of the group scales (R, C/16): s_g clip(round(w / s_g), -7, 7), float64."""
    s = np.repeat(scale.astype(np.float64), INT4_GROUP, axis=1)
    return np.clip(np.rint(w / s), -7, 7) * s


def test_int4_groups_take_the_scale_of_least_error_and_keep_their_own_size():
    rng = np.random.default_rng(0)
    sizes = np.array([1e-3, 1.0, 30.0]).repeat(INT4_GROUP)  # three groups a row, of very different sizes
    w = (rng.standard_normal((200, 3 * INT4_GROUP)) * sizes).astype(np.float64)
    codes, scale = quantize_int4(w)
    assert codes.dtype == np.uint8 and codes.shape == (200, 3 * INT4_GROUP // 2)
    assert scale.dtype == np.float16 and scale.shape == (200, 3)
    back = dequantize_int4(codes, scale).astype(np.float64)
    w32 = w.astype(np.float32).astype(np.float64)  # what is quantised
    np.testing.assert_allclose(back, _int4_grid(w32, scale), rtol=1e-6, atol=0)  # the stored codes are the grid's
    err = ((back - w32) ** 2).reshape(200, 3, INT4_GROUP).sum(axis=2)  # (R, G)
    plain = (np.abs(w32).reshape(200, 3, INT4_GROUP).max(axis=2) / 7).astype(np.float16)  # s_g = max|g| / 7
    plain_err = ((_int4_grid(w32, plain) - w32) ** 2).reshape(200, 3, INT4_GROUP).sum(axis=2)
    assert (err <= plain_err * (1 + 1e-6)).all()  # the search includes max / 7: never worse
    assert err.sum() < 0.95 * plain_err.sum()  # and on Gaussian weights clearly better
    inside = np.abs(w32) <= 7 * np.repeat(scale.astype(np.float64), INT4_GROUP, axis=1)
    assert (np.abs(back - w32)[inside] <= np.repeat(scale.astype(np.float64), INT4_GROUP, axis=1)[inside] / 2 * (1 + 1e-6)).all()
    assert (np.abs(back - w32)[:, :INT4_GROUP] < 1e-3).all()  # the small group keeps its own scale
    q = np.rint(back / np.repeat(scale.astype(np.float64), INT4_GROUP, axis=1))
    assert q.min() == -7 and q.max() == 7


def test_int4_export_stores_five_bits_a_weight_and_loads_as_the_grid(tmp_path):
    model = _tiny_model_dir(tmp_path / "full", hidden=64, embedding=32)
    meta = export_model_dir(tmp_path / "full", tmp_path / "q", stored_dtype="int4")
    assert meta["stored_dtype"] == "int4"
    stored = safetensors.load_file(tmp_path / "q" / "model.safetensors")
    _, weights = read_model_dir(tmp_path / "q")
    assert set(weights) == {name for name, _ in model.named_parameters()}
    int4 = 0
    for name, p in model.named_parameters():
        w = p.data.astype(np.float64)
        if w.ndim == 1:
            assert stored[name].dtype == np.float16
            continue
        assert w.shape[1] % INT4_GROUP == 0  # every matrix of this model is whole groups
        int4 += w.size
        scale = stored[name + INT4_SCALE_SUFFIX]
        assert stored[name].dtype == np.uint8 and stored[name].shape == (w.shape[0], w.shape[1] // 2)
        assert scale.shape == (w.shape[0], w.shape[1] // INT4_GROUP)
        np.testing.assert_allclose(weights[name], _int4_grid(w, scale), rtol=1e-6, atol=0, err_msg=name)
        assert not np.array_equal(weights[name], p.data)
    assert int4 > 0.9 * sum(p.data.size for p in model.parameters())
    export_model_dir(tmp_path / "full", tmp_path / "q8", stored_dtype="int8")
    assert (os.path.getsize(tmp_path / "q" / "model.safetensors")
            < 0.7 * os.path.getsize(tmp_path / "q8" / "model.safetensors"))  # 5 bits against 8, plus the header
    loaded = G2P(str(tmp_path / "q"))
    for name, p in loaded.model.named_parameters():
        np.testing.assert_array_equal(p.data, weights[name])


def test_int4_stores_a_matrix_of_partial_groups_as_int8(tmp_path):
    _tiny_model_dir(tmp_path / "full", hidden=8, embedding=4)  # rows of 4 and 8 weights
    export_model_dir(tmp_path / "full", tmp_path / "q", stored_dtype="int4")
    stored = safetensors.load_file(tmp_path / "q" / "model.safetensors")
    assert stored["encoder.embedding.weight"].dtype == np.int8
    assert "encoder.embedding.weight" + SCALE_SUFFIX in stored
    G2P(str(tmp_path / "q"))(["cat"])


def test_int4_folder_with_a_misshapen_scale_is_a_clean_error(tmp_path):
    _tiny_model_dir(tmp_path / "full", hidden=32, embedding=16)
    export_model_dir(tmp_path / "full", tmp_path / "q", stored_dtype="int4")
    path = tmp_path / "q" / "model.safetensors"
    stored = safetensors.load_file(path)
    name = "decoder.fc_out.weight"
    stored[name + INT4_SCALE_SUFFIX] = stored[name + INT4_SCALE_SUFFIX][:, :0]
    safetensors.save_file(stored, path)
    seal_model_dir(tmp_path / "q")
    with pytest.raises(CheckpointError, match=f"{name}.*scales of shape"):
        read_model_dir(tmp_path / "q")
    del stored[name + INT4_SCALE_SUFFIX]
    safetensors.save_file(stored, path)
    seal_model_dir(tmp_path / "q")
    with pytest.raises(CheckpointError, match=f"{name}.*has no"):
        read_model_dir(tmp_path / "q")


def test_unknown_stored_dtype_is_refused(tmp_path):
    _tiny_model_dir(tmp_path / "full")
    with pytest.raises(ValueError, match="stored_dtype must be one of"):
        export_model_dir(tmp_path / "full", tmp_path / "x", stored_dtype="int2")
    assert not os.path.exists(tmp_path / "x")
    meta = json.loads((tmp_path / "full" / "model.json").read_text())
    (tmp_path / "full" / "model.json").write_text(json.dumps({**meta, "stored_dtype": "bfloat16"}))
    with pytest.raises(CheckpointError, match="stored_dtype must be one of"):
        read_model_dir(tmp_path / "full")


def test_export_command_writes_a_loadable_copy(tmp_path):
    _tiny_model_dir(tmp_path / "full")
    r = subprocess.run([sys.executable, "-m", "minis2s", "g2p", "export", "--model", str(tmp_path / "full"),
                        "--out", str(tmp_path / "half"), "--float16"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "MB of weights" in r.stdout
    r = subprocess.run([sys.executable, "-m", "minis2s", "g2p", "predict", "--model", str(tmp_path / "half"), "cat"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("cat\t")


def test_export_of_a_missing_folder_is_a_clean_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "minis2s", "g2p", "export", "--model", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert "minis2s: error:" in r.stderr and "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "x")


def test_average_is_the_mean_of_the_weights_and_loads(tmp_path):
    models = []
    for i in range(3):
        cfg = ModelConfig(hidden=8, layers=1, embedding=4, dropout=0.0)
        manual_seed(10 + i)  # three different random models of one architecture
        models.append(g2p_model(cfg))
        save_model_dir(tmp_path / f"m{i}", models[-1], {**describe(cfg), "epoch": i + 1})
    meta = average_model_dirs([tmp_path / f"m{i}" for i in range(3)], tmp_path / "avg")
    assert meta["epoch"] == 3 and len(meta["averaged_from"]) == 3
    _, weights = read_model_dir(tmp_path / "avg")
    for name, _ in models[0].named_parameters():
        stack = np.stack([m.state_dict()[name].astype(np.float64) for m in models])
        expected = stack.mean(axis=0).astype(np.float32)
        assert weights[name].dtype == np.float32
        np.testing.assert_allclose(weights[name], expected, rtol=0, atol=1e-7)  # float64 mean, one rounding
        assert not np.allclose(weights[name], models[0].state_dict()[name])  # really a mix
    G2P(str(tmp_path / "avg"))(["cat"])


def test_average_refuses_one_folder_and_different_architectures(tmp_path):
    _tiny_model_dir(tmp_path / "a")
    _tiny_model_dir(tmp_path / "b", hidden=16)
    with pytest.raises(ValueError, match="at least 2 model folders"):
        average_model_dirs([tmp_path / "a"], tmp_path / "x")
    with pytest.raises(CheckpointError, match="not the same architecture"):
        average_model_dirs([tmp_path / "a", tmp_path / "b"], tmp_path / "x")
    assert not os.path.exists(tmp_path / "x")


def test_average_command(tmp_path):
    _tiny_model_dir(tmp_path / "a")
    _tiny_model_dir(tmp_path / "b")
    r = subprocess.run([sys.executable, "-m", "minis2s", "g2p", "average", str(tmp_path / "a"), str(tmp_path / "b"),
                        "--out", str(tmp_path / "avg")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "the mean of 2 models" in r.stdout
    r = subprocess.run([sys.executable, "-m", "minis2s", "g2p", "average", str(tmp_path / "a"), str(tmp_path / "nope"),
                        "--out", str(tmp_path / "avg2")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "minis2s: error:" in r.stderr and "does not exist" in r.stderr
