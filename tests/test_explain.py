"""``minis2s g2p explain`` (minis2s/explain.py) on every shipped model, library and command.

- The explanation is the model's own decision: the chosen phonemes are its greedy output and each
  step's argmax; every distribution sums to 1; an ensemble's is its members' mean; top-5 sorted.
- The gradient per letter is the embedding's gradient of the loss (computed here without the
  trace; float32 within 1e-5); attention rows sum to 1; a model without attention has none.
- The command prints a line per step and writes a PNG; a bad word is one line, exit 2.
"""
import numpy as np
import pytest
from conftest import check_close
from test_cli import assert_clean_error, assert_ok, minis2s

from minis2s.data import Vocab
from minis2s.explain import explain, format_explanation
from minis2s.g2p import G2P, PRETRAINED_ENSEMBLES, encode_words
from minis2s.ops import cross_entropy_backward, cross_entropy_forward

MODELS = ["seq2seq", "attention", "stress", "ensemble"]
WORD = "planet"  # distinct letters: each embedding row's gradient is one letter's


@pytest.fixture(scope="module", params=MODELS)
def explained(request):
    g2p = G2P(request.param)
    return request.param, g2p, explain(g2p, WORD)


def test_the_explanation_is_the_models_own_greedy_choice(explained):
    name, g2p, ex = explained
    assert ex.outputs == g2p([WORD])[0] + ["<eos>"] and ex.letters == list(WORD)
    T, V = len(ex.outputs), len(g2p.trg_vocab)
    assert ex.probs.shape == (T, V)
    np.testing.assert_allclose(ex.probs.sum(axis=1), 1.0, atol=1e-6)
    assert [ex.vocab[j] for j in ex.probs.argmax(axis=1)] == ex.outputs
    for step, alts in enumerate(ex.top(5)):
        assert len(alts) == 5 and alts[0][0] == ex.outputs[step]
        assert [p for _, p in alts] == sorted((p for _, p in alts), reverse=True)
    assert len(ex.members) == (len(PRETRAINED_ENSEMBLES["ensemble"]) if name == "ensemble" else 1)
    np.testing.assert_allclose(ex.probs, np.mean([m.probs for m in ex.members], axis=0), atol=1e-12)


def test_each_members_internals_have_their_documented_shapes(explained):
    _, _, ex = explained
    S, T = len(WORD), len(ex.outputs)
    for m in ex.members:
        assert list(m.gates) == ["i", "f", "g", "o"] and all(a.shape[0] == S for a in m.gates.values())
        assert m.c.shape[0] == T and m.grad_norm.shape == (S,) and (m.grad_norm > 0).all()
        if m.name == "attention":
            assert m.attention.shape == (T, S)
            np.testing.assert_allclose(m.attention.sum(axis=1), 1.0, atol=1e-5)
        else:
            assert m.attention is None and m.reverse_source  # the seq2seq model reads reversed


def test_gradient_per_letter_is_the_embeddings_gradient(explained):
    _, g2p, ex = explained
    for member, got in zip(g2p.members or [g2p], ex.members):
        model = member.model
        src = np.array(encode_words([WORD], member.src_vocab, member.reverse_source)[0])[:, None]
        trg = np.array([Vocab.sos_id, *member.trg_vocab.encode(ex.outputs[:-1]), Vocab.eos_id])[:, None]
        logits = model(src, trg, 1.0, generator=np.random.default_rng(0))
        loss, cache = cross_entropy_forward(logits[1:, 0], trg[1:, 0])
        dlogits = np.zeros_like(logits)
        dlogits[1:, 0] = cross_entropy_backward(1.0, cache)
        model.zero_grad()
        model.backward(dlogits)
        rows = model.encoder.embedding.weight.grad[member.src_vocab.encode(list(WORD))]  # (S, E) reading order
        model.zero_grad()
        check_close(f"{got.name} grad per letter", got.grad_norm, np.linalg.norm(rows, axis=1), 1e-5)
        assert abs(got.loss - float(loss)) < 1e-6


def test_the_text_names_every_step_and_every_member(explained):
    _, _, ex = explained
    lines = format_explanation(ex).splitlines()
    assert lines[0].startswith(f"{WORD} -> {' '.join(ex.outputs[:-1])}")
    steps = lines[2:2 + len(ex.outputs)]
    assert [s.split()[1] for s in steps] == ex.outputs
    assert len(lines) == 2 + len(ex.outputs) + len(ex.members)


@pytest.mark.parametrize("model", MODELS)
def test_explain_command_prints_each_step_and_draws_the_figure(model, tmp_path):
    args = ["g2p", "explain", "Planet", "--plot", "why.png"] + ([] if model == "ensemble" else ["--model", model])
    p = minis2s(*args, cwd=tmp_path)
    assert_ok(p)
    lines = p.stdout.strip().splitlines()
    assert lines[0].startswith("Planet -> ") and lines[-1].startswith(("seq2seq", "attention"))
    assert any(line.split()[1:2] == ["<eos>"] for line in lines)
    with open(tmp_path / "why.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("word, fragment", [("th0ught", "outside the model's alphabet"), ("", "word is empty")])
def test_explain_command_refuses_a_bad_word_in_one_line(word, fragment, tmp_path):
    p = minis2s("g2p", "explain", word, "--model", "seq2seq", cwd=tmp_path)
    assert p.returncode == 2
    assert_clean_error(p, fragment)
    assert p.stdout == ""
