"""G2P with ``--arch attention``: the heatmap of which letters each phoneme attended to.

- ``g2p train --arch attention`` writes a model folder whose model.json names the architecture
  (bahdanau, input feeding, source read in order) and that loads as an AttentionSeq2Seq;
  ``G2P.attention`` gives one row per phoneme (and <eos>) over the word's letters, each summing to
  1, and ``g2p predict --plot`` writes that heatmap as a PNG, atomically;
- ``--plot`` refuses a model without attention and more than one word, before printing anything;
- with ``reverse_source`` the columns are still the letters in reading order: the model's own
  weights over the reversed source, flipped.
"""
import json

import numpy as np
import pytest

from minis2s import AttentionSeq2Seq
from minis2s.data import Vocab
from minis2s.random import manual_seed

F64 = np.float64


@pytest.fixture(scope="module")
def tiny_attention_run(tmp_path_factory):
    """A tiny attention model trained for one short epoch (the first 64 training pairs) on a
    50-word dev set."""
    from minis2s import g2p
    from minis2s.cli import main
    from minis2s.data.cmudict import load_split

    run = tmp_path_factory.mktemp("g2p") / "att"
    dev = dict(list(load_split("dev").items())[:50])
    original = g2p.load_split
    g2p.load_split = lambda split, stress=False: dev if split == "dev" else original(split, stress)
    try:
        rc = main(["g2p", "train", "--arch", "attention", "--attention", "bahdanau", "--out", str(run),
                   "--train-limit", "64", "--hidden", "12", "--embedding", "6", "--layers", "1",
                   "--epochs", "1", "--batch-size", "16", "--quiet"])
    finally:
        g2p.load_split = original
    assert rc == 0
    return run


def test_g2p_train_arch_attention_writes_a_model_that_predict_plots(tiny_attention_run, tmp_path, capsys):
    from minis2s.cli import main
    from minis2s.g2p import G2P
    from minis2s.models import ModelConfig

    meta = json.loads((tiny_attention_run / "best" / "model.json").read_text())
    cfg = ModelConfig.from_dict(meta["model"])
    assert (cfg.arch, cfg.attention, cfg.input_feeding, cfg.reverse_source) == ("attention", "bahdanau", True, False)
    g2p = G2P(str(tiny_attention_run / "best"))
    assert isinstance(g2p.model, AttentionSeq2Seq)
    letters, phonemes, weights = g2p.attention("Hello")
    assert letters == list("hello") and phonemes[-1] == "<eos>"
    assert weights.shape == (len(phonemes), 5)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    png = tmp_path / "hello.png"
    capsys.readouterr()
    assert main(["g2p", "predict", "hello", "--model", str(tiny_attention_run / "best"), "--beam", "2",
                 "--plot", str(png)]) == 0
    assert capsys.readouterr().out.startswith("hello\t")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_g2p_predict_plot_refuses_a_seq2seq_model_and_several_words(tiny_attention_run, tmp_path, capsys):
    from minis2s.checkpoint import save_model_dir
    from minis2s.cli import main
    from minis2s.g2p import G2PTask
    from minis2s.models import ModelConfig

    cfg = ModelConfig(hidden=8, layers=1, embedding=4)
    task = G2PTask(cfg, train_words={"a": [["AH"]]}, dev_words={})
    folder = tmp_path / "seq2seq"
    save_model_dir(str(folder), task.build_model(), task.describe())
    png = tmp_path / "x.png"
    assert main(["g2p", "predict", "hello", "--model", str(folder), "--plot", str(png)]) == 2
    out = capsys.readouterr()
    assert "no attention" in out.err and not png.exists()
    assert out.out == ""  # refused before any pronunciation is printed
    assert main(["g2p", "predict", "a", "b", "--model", str(tiny_attention_run / "best"), "--plot", str(png)]) == 2
    assert "one word" in capsys.readouterr().err and not png.exists()


def test_g2p_attention_columns_are_letters_in_reading_order_when_the_source_is_reversed():
    from minis2s.g2p import G2P, G2PTask
    from minis2s.models import ModelConfig

    manual_seed(1)
    cfg = ModelConfig(arch="attention", hidden=8, layers=1, embedding=4, reverse_source=True, dropout=0.0,
                      dtype="float64")
    task = G2PTask(cfg, train_words={"a": [["AH"]]}, dev_words={})
    model = task.build_model()
    assert all(p.data.dtype == F64 for p in model.parameters())
    g2p = G2P(model=model, meta=task.describe())
    letters, phonemes, weights = g2p.attention("cab", ["K", "AE", "B"])
    src = np.array(task.src_vocab.encode(list("bac")))[:, None]  # what the model reads: reversed
    trg = np.array([Vocab.sos_id, *task.trg_vocab.encode(["K", "AE", "B"]), Vocab.eos_id])[:, None]
    g2p.model(src, trg, 1.0)
    assert letters == list("cab") and phonemes == ["K", "AE", "B", "<eos>"]
    np.testing.assert_array_equal(weights, g2p.model.attention_weights[1:, ::-1, 0])
