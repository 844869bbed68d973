"""`minis2s g2p export`: a float16 copy of a model folder halves the weights and loads back."""
import os
import subprocess
import sys

import numpy as np

from minis2s import manual_seed
from minis2s.checkpoint import export_model_dir, read_model_dir, save_model_dir
from minis2s.data import Vocab
from minis2s.g2p import LETTERS, PHONEMES, G2P, G2PModelConfig, build_model, describe_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_model_dir(path):
    cfg = G2PModelConfig(hidden=8, layers=1, embedding=4, dropout=0.0)
    manual_seed(3)
    model = build_model(cfg, Vocab(LETTERS), Vocab(PHONEMES))
    save_model_dir(path, model, describe_model(cfg, Vocab(LETTERS), Vocab(PHONEMES)))
    return model


def test_float16_export_halves_the_weights_and_rounds_them_to_half(tmp_path):
    model = _tiny_model_dir(tmp_path / "full")
    export_model_dir(tmp_path / "full", tmp_path / "half", float16=True)
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
