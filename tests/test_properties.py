"""Properties that hold for any weights and shapes (hypothesis draws the shapes):

* a batch equals its rows run one at a time (outputs, final states, gradients);
* attention gives padded source positions weight exactly 0 and no gradient, whatever their
  scores (inf, NaN) or keys hold;
* gradients accumulate: two forward/backward pairs give exactly twice one;
* float32 -> float64 -> float32 keeps every value bit for bit;
* eval mode disables dropout; train mode with dropout > 0 changes outputs, and a fixed seed
  replays the same masks;
* teacher forcing at every step (the decoder run over the whole sequence at once) equals the
  step-by-step loop.

Shapes: S source steps, T steps, B batch, I input, H hidden, L layers, E embedding, V vocabulary.
"""
import numpy as np
import pytest
from conftest import ATTENTION_KINDS, F32_TOL, F64_TOL, attention_params, check_close, source_mask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minis2s import Decoder, Encoder, Seq2Seq, ops
from minis2s.nn import GRU, LSTM, RNN, Embedding, Linear

MODULES = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
HYPOTHESIS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def grads(module):
    return {name: p.grad.copy() for name, p in module.named_parameters()}


def reseed_dropout(module, seed):
    """A fresh seeded generator for every module that draws dropout masks."""
    for k, m in enumerate(module.modules()):
        if hasattr(m, "rng"):
            m.rng = np.random.default_rng(seed + k)


def make_seq2seq(src_vocab=5, trg_vocab=4, H=3, E=2, L=2, cell="lstm", dropout=0.0, dtype=np.float64, seed=0):
    """Weights drawn from ``seed`` alone, so that a hypothesis example replays the same model."""
    rng = np.random.default_rng(seed)
    return Seq2Seq(Encoder(src_vocab, H, E, L, dropout=dropout, cell=cell, dtype=dtype, rng=rng),
                   Decoder(trg_vocab, H, E, L, dropout=dropout, cell=cell, dtype=dtype, rng=rng))


# ---- a batch equals its rows ------------------------------------------------------------------


@st.composite
def rnn_shapes(draw):
    return {
        "cell": draw(st.sampled_from(["lstm", "gru", "rnn"])), "L": draw(st.integers(1, 3)),
        "B": draw(st.integers(1, 4)), "T": draw(st.integers(1, 6)), "I": draw(st.integers(1, 5)),
        "H": draw(st.integers(1, 6)), "seed": draw(st.integers(0, 2**32 - 1)),
    }


@HYPOTHESIS
@given(shape=rnn_shapes())
def test_padded_batch_equals_each_row_run_alone_at_its_own_length(shape):
    """Row b of a padded batch = that row alone, truncated to lengths[b]: outputs (zeros past the
    length), final states, initial-state gradients; parameter gradients add up over the rows."""
    rng = np.random.default_rng(shape["seed"])
    cell, L, B, T, I, H = (shape[k] for k in ("cell", "L", "B", "T", "I", "H"))
    lstm = cell == "lstm"
    mod = MODULES[cell](I, H, L, dtype=np.float64, rng=rng)
    x = rng.standard_normal((T, B, I))
    s0 = [rng.standard_normal((L, B, H)) for _ in range(2 if lstm else 1)]
    lengths = rng.integers(1, T + 1, size=B)
    dout = rng.standard_normal((T, B, H))
    dfinal = [rng.standard_normal((L, B, H)) for _ in s0]

    def run(x, s0, lengths, dout, dfinal):
        out, finals = mod(x, tuple(s0), lengths=lengths) if lstm else mod(x, s0[0], lengths=lengths)
        _, ds0 = mod.backward(dout, *dfinal, return_state_grads=True)
        return out, (finals if lstm else (finals,)), (ds0 if lstm else (ds0,))

    out, finals, ds0 = run(x, s0, lengths, dout, dfinal)
    batch_grads = grads(mod)
    mod.zero_grad()
    for b in range(B):
        n, rows = int(lengths[b]), slice(b, b + 1)
        out_b, finals_b, ds0_b = run(x[:n, rows], [s[:, rows] for s in s0], None, dout[:n, rows],
                                     [d[:, rows] for d in dfinal])
        check_close(f"row {b} outputs", out[:n, rows], out_b, F64_TOL)
        assert np.all(out[n:, b] == 0.0), f"row {b}: padded steps must output zeros"
        for k in range(len(s0)):
            check_close(f"row {b} final state {k}", finals[k][:, rows], finals_b[k], F64_TOL)
            check_close(f"row {b} initial-state gradient {k}", ds0[k][:, rows], ds0_b[k], F64_TOL)
    for name, g in grads(mod).items():  # accumulated over the rows
        check_close(f"{name} gradient: batch vs sum of rows", batch_grads[name], g, F64_TOL)


@st.composite
def seq2seq_shapes(draw):
    return {
        "cell": draw(st.sampled_from(["lstm", "gru", "rnn"])), "L": draw(st.integers(1, 3)),
        "B": draw(st.integers(1, 4)), "S": draw(st.integers(1, 5)), "T": draw(st.integers(2, 5)),
        "H": draw(st.integers(1, 6)), "E": draw(st.integers(1, 4)),
        "src_vocab": draw(st.integers(2, 6)), "trg_vocab": draw(st.integers(2, 6)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@pytest.mark.parametrize("ratio", [1.0, 0.0, 0.5])
@HYPOTHESIS
@given(shape=seq2seq_shapes())
def test_seq2seq_batch_equals_each_row_run_alone(ratio, shape):
    """Each row of a batch (source padded, ``src_lengths``) decodes as it would alone, for the
    same coin flips; parameter gradients of the batch are the sum of the rows'."""
    rng = np.random.default_rng(shape["seed"])
    B, S, T = shape["B"], shape["S"], shape["T"]
    model = make_seq2seq(shape["src_vocab"], shape["trg_vocab"], shape["H"], shape["E"], shape["L"],
                         shape["cell"], seed=shape["seed"])
    src = rng.integers(0, shape["src_vocab"], size=(S, B))
    trg = rng.integers(0, shape["trg_vocab"], size=(T, B))
    src_lengths = rng.integers(1, S + 1, size=B)
    r = rng.standard_normal((T, B, shape["trg_vocab"]))
    seed = shape["seed"] + 1  # the generator of coin flips, re-created for every forward

    out = model(src, trg, ratio, src_lengths=src_lengths, generator=np.random.default_rng(seed))
    flips = model.teacher_forcing_flips
    model.backward(r)
    batch_grads = grads(model)
    model.zero_grad()
    for b in range(B):
        n, rows = int(src_lengths[b]), slice(b, b + 1)
        out_b = model(src[:n, rows], trg[:, rows], ratio, generator=np.random.default_rng(seed))
        assert model.teacher_forcing_flips == flips
        model.backward(r[:, rows])
        check_close(f"row {b} outputs", out[:, rows], out_b, F64_TOL)
    for name, g in grads(model).items():
        check_close(f"{name} gradient: batch vs sum of rows", batch_grads[name], g, F64_TOL)


# ---- attention ignores padding -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_masked_positions_get_exactly_zero_weight_whatever_their_scores(rng, kind):
    """Exactly 0.0 (not 1e-30) on padding; real positions sum to 1; huge scores stay finite."""
    scores = rng.standard_normal((5, 4)) * 1e4  # softmax overflows without the max shift
    scores[3:, 1] = [np.inf, np.nan]  # garbage at padded positions must not leak
    mask = source_mask([5, 3, 1, 4], 5)
    w, _ = ops.masked_softmax_forward(scores, mask)
    assert np.all(w[~mask] == 0.0) and np.all(np.isfinite(w))
    np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=0, atol=1e-15)
    assert np.all(ops.masked_softmax_backward(rng.standard_normal((5, 4)), w)[~mask] == 0.0)
    # through the op, with keys that are garbage (large) where padded
    S, B, H = 4, 3, 3
    keys = rng.standard_normal((S, B, H))
    mask = source_mask([4, 1, 2], S)
    keys[~mask] = 1e6
    context, weights, cache = ops.attention_forward(kind, rng.standard_normal((B, H)), keys, mask,
                                                    tuple(attention_params(rng, kind, H, H, 2).values()))
    assert np.all(weights[~mask] == 0.0)
    assert np.all(np.abs(context) < 10)  # no trace of the 1e6 keys
    assert np.all(ops.attention_backward(rng.standard_normal((B, H)), cache)[1][~mask] == 0.0)


# ---- gradients accumulate -------------------------------------------------------------------


def test_two_backward_calls_accumulate_twice_the_gradient_in_every_module(rng):
    """``.grad += g`` (PyTorch's rule): after two identical forward/backward pairs every
    gradient is twice that of one (to round-off: the decoder adds one term per step, so the
    second pass sums in another order); ``zero_grad()`` clears them."""
    lin, emb = Linear(3, 4, dtype=np.float64), Embedding(5, 3, dtype=np.float64)
    lstm = LSTM(3, 2, 2, dtype=np.float64)
    model = make_seq2seq()
    x = rng.standard_normal((4, 2, 3))
    ids = np.array([[0, 4], [4, 1]])
    src, trg = rng.integers(0, 5, size=(3, 2)), rng.integers(0, 4, size=(4, 2))
    steps = {
        "Linear": (lin, lambda: lin.backward(np.ones((4, 2, 4)) + lin(x))),
        "Embedding": (emb, lambda: emb.backward(emb(ids) * 2.0)),
        "LSTM": (lstm, lambda: lstm.backward(lstm(x)[0])),
        "Seq2Seq": (model, lambda: model.backward(model(src, trg, 0.5, generator=np.random.default_rng(0)))),
    }
    for what, (module, step) in steps.items():
        step()
        once = grads(module)
        step()
        for name, g in grads(module).items():
            check_close(f"{what}: {name} after two backward calls", g, 2.0 * once[name], F64_TOL)
        module.zero_grad()
        assert all(p.grad is None for p in module.parameters()), f"{what}: zero_grad left gradients"


# ---- dtype round trip ---------------------------------------------------------------------


def test_float32_to_float64_and_back_keeps_every_value_exactly(rng):
    model = make_seq2seq(dtype=np.float32)
    src, trg = rng.integers(0, 5, size=(3, 2)), rng.integers(0, 4, size=(4, 2))
    out32 = model(src, trg, 1.0)
    model.backward(rng.standard_normal(out32.shape).astype(np.float32))
    before, before_grads = model.state_dict(), grads(model)

    model.to(dtype=np.float64)
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in model.parameters())
    for name, v in model.state_dict().items():
        assert np.array_equal(v, before[name].astype(np.float64)), f"{name} changed in float64"
    out64 = model(src, trg, 1.0)
    assert out64.dtype == np.float64
    check_close("float64 outputs of the float32 weights", out32, out64, F32_TOL)

    model.to(dtype=np.float32)
    for name, v in model.state_dict().items():
        assert v.dtype == np.float32 and np.array_equal(v, before[name]), f"{name} not restored exactly"
    for name, g in grads(model).items():
        assert g.dtype == np.float32 and np.array_equal(g, before_grads[name]), f"grad {name} changed"


# ---- dropout: train vs eval -------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_eval_mode_disables_dropout_and_train_mode_applies_it(rng, cell):
    model = make_seq2seq(cell=cell, dropout=0.5)
    plain = make_seq2seq(cell=cell, dropout=0.0)
    plain.load_state_dict(model.state_dict())
    src, trg = rng.integers(0, 5, size=(4, 3)), rng.integers(0, 4, size=(5, 3))

    def forward(m, seed):
        reseed_dropout(m, seed)
        return m(src, trg, 1.0)

    model.eval()
    evals = [forward(model, seed) for seed in (1, 2)]
    assert np.array_equal(evals[0], evals[1]), "eval mode must not depend on the dropout generator"
    assert np.array_equal(evals[0], forward(plain, 1)), "eval mode must equal the model without dropout"

    model.train()
    assert np.array_equal(forward(model, 1), forward(model, 1)), "the same seed must replay the same masks"
    assert not np.allclose(forward(model, 1), forward(model, 2)), "different masks should change outputs"
    assert not np.allclose(forward(model, 1), evals[0]), "train mode with dropout 0.5 should differ from eval"
    assert np.array_equal(forward(plain.train(), 1), evals[0]), "with dropout 0, train mode equals eval"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recurrent_module_dropout_only_between_layers_in_train_mode(rng, cell):
    mod = MODULES[cell](3, 4, 3, dropout=0.4, dtype=np.float64)
    x = rng.standard_normal((5, 2, 3))
    mod.rng = np.random.default_rng(0)
    train_a = mod(x)[0]
    mod.rng = np.random.default_rng(1)
    train_b = mod(x)[0]
    mod.eval()
    mod.rng = np.random.default_rng(0)
    eval_a = mod(x)[0]
    mod.rng = np.random.default_rng(1)
    assert np.array_equal(eval_a, mod(x)[0])
    assert not np.allclose(train_a, train_b) and not np.allclose(train_a, eval_a)
    one_layer = MODULES[cell](3, 4, 1, dropout=0.4, dtype=np.float64)
    one_layer.rng = np.random.default_rng(0)
    a = one_layer(x)[0]
    one_layer.rng = np.random.default_rng(1)
    assert np.array_equal(a, one_layer(x)[0]), "one layer: no layer to drop between, as in torch"


# ---- the two decoding paths agree ------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_full_teacher_forcing_equals_the_step_by_step_decoder_loop(rng, cell):
    """Ratio 1 runs the decoder over the whole target at once; the same numbers (outputs and
    gradients) come from calling ``decoder`` once per step, as the skeleton's loop does."""
    model = make_seq2seq(cell=cell, L=2)
    src, trg = rng.integers(0, 5, size=(4, 3)), rng.integers(0, 4, size=(5, 3))
    src_lengths = np.array([4, 1, 3])
    r = rng.standard_normal((5, 3, 4))
    out = model(src, trg, 1.0, src_lengths=src_lengths)
    model.backward(r)
    whole = grads(model)
    model.zero_grad()

    enc, dec = model.encoder, model.decoder
    hidden, cell_state = enc(src, src_lengths)
    steps = []
    for t in range(1, 5):
        pred, hidden, cell_state = dec(trg[t - 1], hidden, cell_state)
        steps.append(pred)
    dh = dc = None
    for t in reversed(range(1, 5)):
        dh, dc = dec.backward(r[t], dh, dc)
    enc.backward(dh, dc)
    check_close("outputs", out[1:], np.stack(steps), F64_TOL)
    for name, g in grads(model).items():
        check_close(f"{name} gradient", whole[name], g, F64_TOL)


def test_gradients_keep_the_parameter_dtype_when_the_upstream_gradient_is_float64(rng):
    """A float64 ``doutputs`` into a float32 model: every ``.grad`` stays float32 (torch casts
    gradients to the parameter's dtype too), and matches the float32 upstream's to round-off."""
    model = make_seq2seq(dtype=np.float32)
    src, trg = rng.integers(0, 5, size=(3, 2)), rng.integers(0, 4, size=(4, 2))
    r = rng.standard_normal((4, 2, 4))
    for upstream in (r.astype(np.float32), r):
        model.zero_grad()
        model(src, trg, 1.0)
        model.backward(upstream)
        for name, p in model.named_parameters():
            assert p.grad.dtype == np.float32, f"{name}.grad is {p.grad.dtype} for a {upstream.dtype} upstream"
        got = grads(model)
        if upstream.dtype == np.float32:
            want = got
    for name, g in got.items():
        check_close(f"{name}: float64 vs float32 upstream", g, want[name], F32_TOL)
