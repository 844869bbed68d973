"""Ensembles: several models decoding as one with the mean of their next-token distributions.

- every step's output is log((1/M) Σ_m softmax(logits_m)), recomputed here member by member
  from each member run on its own (float64, ≤ 1e-12 relative: the only difference is the order
  of a few float64 operations), with a member that reads the source reversed within each row's
  length, on padded batches, through beam reordering (``select_state``);
- an ensemble of one model decodes exactly as the model (greedy and beam, same scores);
- greedy: where every member's greedy output is the same, the ensemble's is that output too
  (each step's argmax is shared, so it is the mean's argmax) — checked on the shipped models;
- bad input: no models, an object without the decoding interface, members of different
  vocabularies, a reverse_source list of the wrong length; ``resolve_model`` and ``g2p export``
  refuse an ensemble's name; a vocabulary mismatch between model folders is a ValueError.
"""
import json

import numpy as np
import pytest
from conftest import SAME_SUMS_F64
from test_cli import assert_clean_error, assert_ok, minis2s, parse_lines
from test_decode import random_model, random_src

from minis2s.data import Vocab
from minis2s.data.cmudict import load_split
from minis2s.decode import beam_search, greedy_decode
from minis2s.models import Ensemble
from minis2s.ops import log_softmax

SOS, EOS = Vocab.sos_id, Vocab.eos_id


def reversed_rows(src, lengths):
    """Each column of src (S, B) reversed within its own length, written out plainly."""
    out = src.copy()
    for b, n in enumerate(lengths):
        out[:n, b] = src[:n, b][::-1]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_step_is_the_log_of_the_mean_of_the_members_distributions(seed):
    rng = np.random.default_rng(seed)
    members = [random_model(10 * seed + m, scale=s) for m, s in enumerate([4.0, 1.0, 2.5])]
    reverse = [False, True, False]
    ens = Ensemble(members, reverse_source=reverse)
    B, K = 5, 3
    src, lengths = random_src(rng, B)
    assert len(set(lengths.tolist())) > 1  # padded rows of different lengths
    state = ens.select_state(ens.init_decoder_state(src, lengths), np.repeat(np.arange(B), K))
    alone = [m.select_state(m.init_decoder_state(reversed_rows(src, lengths) if r else src, lengths),
                            np.repeat(np.arange(B), K)) for m, r in zip(members, reverse)]
    input = np.full(B * K, SOS)
    for _ in range(6):
        logp, state = ens.decode_step(input, state)
        probs = []
        for i, m in enumerate(members):
            logits, alone[i] = m.decode_step(input, alone[i])
            probs.append(np.exp(log_softmax(logits, axis=1)))
        expected = np.log(np.mean(probs, axis=0))  # (B·K, V)
        assert logp.dtype == np.float64 and logp.shape == expected.shape
        np.testing.assert_allclose(logp, expected, rtol=SAME_SUMS_F64, atol=0)
        np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=1e-12)
        # a beam-like reordering of the rows, the same for the ensemble and the members alone
        index = rng.permutation(B * K)
        state = ens.select_state(state, index)
        alone = [m.select_state(s, index) for m, s in zip(members, alone)]
        input = rng.integers(4, logp.shape[1], B * K)


def test_an_ensemble_of_one_decodes_as_the_model():
    rng = np.random.default_rng(7)
    model = random_model(7)
    src, lengths = random_src(rng, 6)
    kw = {"max_len": 9, "sos_id": SOS, "eos_id": EOS}
    one = Ensemble([model])
    assert greedy_decode(one, src, lengths, **kw) == greedy_decode(model, src, lengths, **kw)
    ours, theirs = (beam_search(m, src, lengths, beam=4, nbest=3, **kw) for m in (one, model))
    for a, b in zip(ours, theirs):
        assert [ids for ids, _ in a] == [ids for ids, _ in b]
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], rtol=SAME_SUMS_F64)


def test_where_the_shipped_members_agree_the_ensemble_agrees():
    from minis2s.g2p import G2P, PRETRAINED_ENSEMBLES

    ens = G2P("ensemble")
    assert len(ens.members) == len(PRETRAINED_ENSEMBLES["ensemble"]) > 1 and ens.cfg is None
    words = list(load_split("dev"))[::20]  # 293 words
    outs = [m(words) for m in ens.members]
    together = ens(words)
    agree = [i for i in range(len(words)) if all(out[i] == outs[0][i] for out in outs)]
    assert len(agree) > 0.6 * len(words)
    assert all(together[i] == outs[0][i] for i in agree)
    # and where they disagree the ensemble is not simply a copy of any one member
    differ = [i for i in range(len(words)) if i not in set(agree)]
    for out in outs:
        assert any(together[i] != out[i] for i in differ)


def test_the_ensemble_s_attention_comes_from_its_attention_member():
    from minis2s.g2p import G2P

    ens = G2P(["seq2seq", "attention"])
    letters, phonemes, weights = ens.attention("thoughtfulness")
    assert letters == list("thoughtfulness") and phonemes[:-1] == ens(["thoughtfulness"])[0]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)  # float32 softmax rows
    with pytest.raises(TypeError, match="no member of this ensemble has attention"):
        G2P(["seq2seq", "seq2seq"]).attention("cat")


@pytest.mark.parametrize("make, exc, msg", [
    (lambda: Ensemble([]), ValueError, "models is empty"),
    (lambda: Ensemble([random_model(0), object()]), TypeError, r"models\[1\] \(object\) lacks"),
    (lambda: Ensemble([random_model(0, V=9), random_model(1, V=11)]), ValueError, "different vocabularies"),
    (lambda: Ensemble([random_model(0)], reverse_source=[True, False]), ValueError, "reverse_source has 2"),
])
def test_bad_ensembles_are_refused(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_an_ensemble_is_not_one_model_folder(tmp_path):
    from minis2s.g2p import G2P, PRETRAINED_ENSEMBLES, resolve_model

    count = f"ensemble of {len(PRETRAINED_ENSEMBLES['ensemble'])} models"
    with pytest.raises(ValueError, match=count):
        resolve_model("ensemble")
    with pytest.raises(ValueError, match="list of models is empty"):
        G2P([])
    with pytest.raises(TypeError, match="model must be a folder"):
        G2P(3)
    assert_clean_error(minis2s("g2p", "export", "--model", "ensemble", "--out", "x", cwd=tmp_path), count)
    assert not (tmp_path / "x").exists()


def test_members_must_share_their_vocabularies(tmp_path):
    import shutil

    from minis2s.checkpoint import seal_model_dir
    from minis2s.g2p import G2P, PRETRAINED_MODELS

    other = tmp_path / "other"
    shutil.copytree(PRETRAINED_MODELS["seq2seq"], other)
    meta = json.loads((other / "model.json").read_text())
    meta["vocab"]["src"] = meta["vocab"]["src"][::-1]  # same letters, other ids
    (other / "model.json").write_text(json.dumps(meta))
    seal_model_dir(other)  # edited by hand and vouched for
    with pytest.raises(ValueError, match="share their letter and phoneme vocabularies"):
        G2P(["attention", str(other)])


def test_the_command_line_decodes_with_an_ensemble(tmp_path):
    from minis2s.g2p import G2P

    words = ["thoughtfulness", "phonetics", "zyzzyva", "cat"]
    p = minis2s("g2p", "predict", *words, "--model", "seq2seq", "--model", "attention", "--beam", "3", cwd=tmp_path)
    assert_ok(p)
    assert parse_lines(p.stdout) == list(zip(words, G2P(["seq2seq", "attention"])(words, beam=3)))
