"""Finite-difference gradient checks (float64) of every op and module in minis2s.

Each check projects every output on a random upstream gradient (``minis2s.gradcheck``) and
compares the analytic gradient of every input, initial state and parameter with central
differences: max relative error <= GRADCHECK_TOL.

Set-up rules (see shared/STYLE.md): biases are never zero (every parameter is overwritten with
fresh random values, and the test asserts they are non-zero), initial states are random and
non-zero, upstream gradients are random. Zeroed biases and states are how a missing ``dh_prev``
term hid in another codebase's tests; the last tests here show that such a bug gives a large
error under this set-up.

Shapes: T time, B batch, I input, H hidden, G gates*H, L layers, V vocabulary, E embedding;
attention: S source, Hq/Hk query/key sizes, A attention size.
"""
import numpy as np
import pytest
from conftest import ATTENTION_KINDS, GRADCHECK_TOL, attention_params, make_attention_seq2seq, source_mask

from minis2s import Decoder, Encoder, Seq2Seq, gradcheck, gradcheck_module, ops
from minis2s.nn import GRU, LSTM, RNN, Linear

RECURRENT_MODULES = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
OP_CELLS = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}  # module name -> ops.CELLS key


def assert_gradcheck(result, what):
    assert result.max_rel_error <= GRADCHECK_TOL, f"{what}: {result}"


def randn(rng, *shape):
    return rng.standard_normal(shape)


def randomize_parameters(module, rng, scale=0.6):
    """Every parameter, biases included, set to fresh random values that are all non-zero."""
    for name, p in module.named_parameters():
        p.data[...] = scale * rng.standard_normal(p.shape)
        assert np.all(p.data != 0.0), f"{name} has a zero entry"


def reseed_dropout(module, seed):
    """Give every module that draws dropout masks a fresh generator with a fixed seed, so a
    forward run again replays the same masks (call it at the start of every forward)."""
    for k, m in enumerate(module.modules()):
        if hasattr(m, "rng"):
            m.rng = np.random.default_rng(seed + k)


# ---- the checker itself ---------------------------------------------------------------------


def test_gradcheck_reports_a_large_error_for_a_wrong_weight_gradient(rng):
    x, w, b = randn(rng, 4, 3), randn(rng, 2, 3), randn(rng, 2)
    tensors = {"x": x, "w": w, "b": b}
    state = {}

    def forward():
        y, state["cache"] = ops.linear_forward(x, w, b)
        return y

    def backward(dy, wrong):
        dx, dw, db = ops.linear_backward(dy, state["cache"])
        return {"x": dx, "w": dw * (1.01 if wrong else 1.0), "b": db}

    assert_gradcheck(gradcheck(forward, lambda d: backward(d, False), tensors), "correct linear")
    bad = gradcheck(forward, lambda d: backward(d, True), tensors)
    assert bad.max_rel_error > 1e-3, f"a 1% error in dW went unnoticed: {bad}"
    assert bad.worst_tensor == "w"


def test_gradcheck_catches_a_missing_dh_prev_term_with_random_states_and_biases(rng):
    """Two LSTM steps whose backward forgets dh_{t-1}, the bug zeroed set-ups hide."""
    H, I, B = 3, 2, 2
    x1, x2 = randn(rng, B, I), randn(rng, B, I)
    h0, c0 = randn(rng, B, H), randn(rng, B, H)
    w_ih, w_hh, b_ih, b_hh = randn(rng, 4 * H, I), randn(rng, 4 * H, H), randn(rng, 4 * H), randn(rng, 4 * H)
    tensors = {"h0": h0, "c0": c0, "w_hh": w_hh, "b_ih": b_ih}
    state = {}

    def forward():
        h1, c1, state["c1"] = ops.lstm_step_forward(x1, h0, c0, w_ih, w_hh, b_ih, b_hh)
        h2, c2, state["c2"] = ops.lstm_step_forward(x2, h1, c1, w_ih, w_hh, b_ih, b_hh)
        return h1, h2, c2

    def backward(d, drop_dh_prev):
        dh1_out, dh2, dc2 = d
        _, dh1, dc1, _, dw_hh2, db_ih2, _ = ops.lstm_step_backward(dh2, dc2, state["c2"])
        if drop_dh_prev:
            dh1 = np.zeros_like(dh1)
        _, dh0, dc0, _, dw_hh1, db_ih1, _ = ops.lstm_step_backward(dh1 + dh1_out, dc1, state["c1"])
        return {"h0": dh0, "c0": dc0, "w_hh": dw_hh1 + dw_hh2, "b_ih": db_ih1 + db_ih2}

    assert_gradcheck(gradcheck(forward, lambda d: backward(d, False), tensors), "two LSTM steps")
    bad = gradcheck(forward, lambda d: backward(d, True), tensors)
    assert bad.max_rel_error > 1e-2, f"a missing dh_prev term went unnoticed: {bad}"


# ---- pointwise and dense ops ----------------------------------------------------------------


def test_embedding_backward_sums_the_rows_of_repeated_ids(rng):
    ids = np.array([[0, 2, 0], [2, 2, 4]])  # ids 0 and 2 repeat, 1 and 3 never appear
    weight = randn(rng, 5, 3)
    state = {}

    def forward():
        out, state["cache"] = ops.embedding_forward(ids, weight)
        return out

    res = gradcheck(forward, lambda d: {"weight": ops.embedding_backward(d, state["cache"])},
                    {"weight": weight})
    assert_gradcheck(res, "embedding")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3)], ids=["2d", "3d"])
def test_linear_backward_matches_finite_differences(rng, shape, bias):
    x, w = randn(rng, *shape), randn(rng, 5, shape[-1])
    b = randn(rng, 5) if bias else None
    tensors = {"x": x, "w": w} | ({"b": b} if bias else {})
    state = {}

    def forward():
        y, state["cache"] = ops.linear_forward(x, w, b)
        return y

    def backward(dy):
        dx, dw, db = ops.linear_backward(dy, state["cache"])
        assert (db is None) == (not bias)
        return {"x": dx, "w": dw} | ({"b": db} if bias else {})

    assert_gradcheck(gradcheck(forward, backward, tensors), f"linear {shape} bias={bias}")


def test_dropout_backward_with_a_replayed_mask_matches_finite_differences(rng):
    x = randn(rng, 3, 4, 5)
    state = {}

    def forward():
        out, state["mask"] = ops.dropout_forward(x, 0.4, np.random.default_rng(7))
        return out

    res = gradcheck(forward, lambda d: {"x": ops.dropout_backward(d, state["mask"])}, {"x": x})
    assert_gradcheck(res, "dropout")
    mask = state["mask"]
    assert np.any(mask == 0.0) and np.any(mask != 0.0), "the mask should drop some and keep some"


@pytest.mark.parametrize("ignore_index", [-100, 0])
@pytest.mark.parametrize("smoothing,soft_weight", [(0.0, 0.0), (0.2, 0.0), (0.2, 0.4)])
def test_cross_entropy_backward_skips_ignored_targets(rng, ignore_index, smoothing, soft_weight):
    """Plain, label-smoothed, and label-smoothed mixed with soft targets (distillation)."""
    logits = 2.0 * randn(rng, 6, 4)
    targets = np.array([1, ignore_index, 3, 2, ignore_index, 0 if ignore_index != 0 else 1])
    soft = rng.dirichlet(np.ones(4), size=6) if soft_weight else None
    state = {}

    def forward():
        loss, state["cache"] = ops.cross_entropy_forward(logits, targets, ignore_index, soft, soft_weight, smoothing)
        return np.asarray(loss)

    def backward(dloss):
        dz = ops.cross_entropy_backward(dloss, state["cache"])
        assert np.all(dz[targets == ignore_index] == 0.0), "ignored rows must get no gradient"
        return {"logits": dz}

    assert_gradcheck(gradcheck(forward, backward, {"logits": logits}), "cross_entropy")


# ---- recurrent cells, steps and sequences ---------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_cell_pointwise_backward_matches_finite_differences(rng, cell):
    """``*_cell_forward(xg, hg, state)``: the gate math alone, given the two projections."""
    c = ops.CELLS[OP_CELLS[cell]]
    B, H = 3, 4
    xg, hg = randn(rng, B, c.gates * H), randn(rng, B, c.gates * H)
    states = [randn(rng, B, H) for _ in range(c.n_states)]
    tensors = {"xg": xg, "hg": hg} | {f"state{k}": s for k, s in enumerate(states)}
    cache = {}

    def forward():
        new, cache["c"] = c.forward(xg, hg, tuple(states))
        return new

    def backward(d):
        d = d if isinstance(d, tuple) else (d,)
        dxg, dhg, ddirect = c.backward(d, cache["c"])
        grads = {"xg": dxg, "hg": dhg}
        for k, (s, g) in enumerate(zip(states, ddirect)):
            grads[f"state{k}"] = np.zeros_like(s) if g is None else g
        return grads

    assert_gradcheck(gradcheck(forward, backward, tensors), f"{cell} cell")


def _recurrent_weights(rng, gates, I, H):
    G = gates * H
    return {"w_ih": randn(rng, G, I), "w_hh": randn(rng, G, H), "b_ih": randn(rng, G), "b_hh": randn(rng, G)}


def test_lstm_step_backward_matches_finite_differences(rng):
    B, I, H = 3, 2, 4
    t = {"x": randn(rng, B, I), "h_prev": randn(rng, B, H), "c_prev": randn(rng, B, H)}
    t |= _recurrent_weights(rng, 4, I, H)
    cache = {}

    def forward():
        h, c, cache["c"] = ops.lstm_step_forward(*t.values())
        return h, c

    def backward(d):
        return dict(zip(t, ops.lstm_step_backward(d[0], d[1], cache["c"])))

    assert_gradcheck(gradcheck(forward, backward, t), "lstm step")


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_single_state_step_backward_matches_finite_differences(rng, cell):
    step_forward, step_backward, gates = {
        "gru": (ops.gru_step_forward, ops.gru_step_backward, 3),
        "rnn": (ops.rnn_step_forward, ops.rnn_step_backward, 1),
    }[cell]
    B, I, H = 3, 2, 4
    t = {"x": randn(rng, B, I), "h_prev": randn(rng, B, H)} | _recurrent_weights(rng, gates, I, H)
    cache = {}

    def forward():
        h, cache["c"] = step_forward(*t.values())
        return h

    def backward(dh):
        return dict(zip(t, step_backward(dh, cache["c"])))

    assert_gradcheck(gradcheck(forward, backward, t), f"{cell} step")


LENGTHS = np.array([5, 2, 4, 1])  # B = 4, T = 5: full, short, middle and one-step rows


@pytest.mark.parametrize("use_outputs", [True, False], ids=["outputs_and_state", "final_state_only"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["unpadded", "padded"])
def test_lstm_forward_sequence_backward_matches_finite_differences(rng, lengths, use_outputs):
    T, B, I, H = 5, 4, 3, 3
    t = {"x": randn(rng, T, B, I), "h0": randn(rng, B, H), "c0": randn(rng, B, H)}
    t |= _recurrent_weights(rng, 4, I, H)
    cache = {}

    def forward():
        out, (h, c), cache["c"] = ops.lstm_forward(*t.values(), lengths=lengths)
        return (out if use_outputs else None), h, c

    def backward(d):
        return dict(zip(t, ops.lstm_backward(d[0], d[1], d[2], cache["c"])))

    assert_gradcheck(gradcheck(forward, backward, t), f"lstm sequence lengths={lengths}")


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["unpadded", "padded"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recurrent_forward_backward_matches_finite_differences(rng, cell, lengths):
    c = ops.CELLS[OP_CELLS[cell]]
    T, B, I, H = 5, 4, 2, 3
    x = randn(rng, T, B, I)
    states = [randn(rng, B, H) for _ in range(c.n_states)]
    w = _recurrent_weights(rng, c.gates, I, H)
    t = {"x": x} | {f"state{k}": s for k, s in enumerate(states)} | w
    cache = {}

    def forward():
        out, s_n, cache["c"] = ops.recurrent_forward(c, x, tuple(states), *w.values(), lengths=lengths)
        return (out,) + tuple(s_n)

    def backward(d):
        dx, ds0, dparams = ops.recurrent_backward(d[0], tuple(d[1:]), cache["c"])
        return {"x": dx} | {f"state{k}": g for k, g in enumerate(ds0)} | dict(zip(w, dparams))

    assert_gradcheck(gradcheck(forward, backward, t), f"{cell} recurrence lengths={lengths}")


# ---- modules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_linear_module_backward_matches_finite_differences(rng, bias):
    lin = Linear(3, 4, bias=bias, dtype=np.float64)
    randomize_parameters(lin, rng)
    x = randn(rng, 2, 5, 3)

    def run():
        y = lin(x)
        return y, lambda dy: {"x": lin.backward(dy)}

    assert_gradcheck(gradcheck_module(lin, run, inputs={"x": x}), f"Linear bias={bias}")


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["unpadded", "padded"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recurrent_module_gradients_of_input_initial_state_and_parameters(rng, cell, num_layers, lengths):
    """Multi-layer LSTM/GRU/RNN in train mode, dropout 0.3 between layers (masks replayed)."""
    T, B, I, H = 5, 4, 2, 3
    mod = RECURRENT_MODULES[cell](I, H, num_layers, dropout=0.3, dtype=np.float64)
    randomize_parameters(mod, rng)
    assert mod.training
    n_states = 2 if cell == "lstm" else 1
    inputs = {"x": randn(rng, T, B, I)} | {f"s0_{k}": randn(rng, num_layers, B, H) for k in range(n_states)}

    def run():
        reseed_dropout(mod, 21)
        s0 = [inputs[f"s0_{k}"] for k in range(n_states)]
        if cell == "lstm":
            out, (h, c) = mod(inputs["x"], tuple(s0), lengths=lengths)
            outs = (out, h, c)
        else:
            out, h = mod(inputs["x"], s0[0], lengths=lengths)
            outs = (out, h)

        def back(d):
            dx, ds0 = mod.backward(*d, return_state_grads=True)
            ds0 = ds0 if isinstance(ds0, tuple) else (ds0,)
            return {"x": dx} | {f"s0_{k}": g for k, g in enumerate(ds0)}

        return outs, back

    res = gradcheck_module(mod, run, inputs=inputs)
    assert_gradcheck(res, f"{cell} x{num_layers} lengths={lengths}")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_encoder_gradients_with_source_lengths_and_dropout(rng, cell):
    enc = Encoder(5, 3, 2, 2, dropout=0.25, cell=cell, dtype=np.float64)
    randomize_parameters(enc, rng)
    src = rng.integers(0, 5, size=(4, 3))
    src[:, 0] = [1, 1, 2, 2]  # a repeated id in one row
    src_lengths = np.array([4, 2, 3])

    def run():
        reseed_dropout(enc, 5)
        hidden, cell_state = enc(src, src_lengths)
        return (hidden, cell_state), lambda d: (enc.backward(d[0], d[1]), {})[1]

    assert_gradcheck(gradcheck_module(enc, run), f"Encoder {cell}")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_decoder_two_steps_gradients_of_incoming_state_and_parameters(rng, cell):
    """Two decoder calls in a row: the tape must hand back each step's cache in reverse order."""
    L, B, H = 2, 3, 4
    dec = Decoder(5, H, 3, L, dropout=0.2, cell=cell, dtype=np.float64)
    randomize_parameters(dec, rng)
    ids1, ids2 = np.array([0, 3, 3]), np.array([4, 4, 1])
    inputs = {"hidden": randn(rng, L, B, H)} | ({"cell": randn(rng, L, B, H)} if cell == "lstm" else {})

    def run():
        reseed_dropout(dec, 9)
        p1, h1, c1 = dec(ids1, inputs["hidden"], inputs.get("cell"))
        p2, h2, c2 = dec(ids2, h1, c1)

        def back(d):
            dp1, dp2, dh2, dc2 = d
            dh1, dc1 = dec.backward(dp2, dh2, dc2)
            dh0, dc0 = dec.backward(dp1, dh1, dc1)
            return {"hidden": dh0} | ({"cell": dc0} if cell == "lstm" else {})

        return (p1, p2, h2, c2), back

    assert_gradcheck(gradcheck_module(dec, run, inputs=inputs), f"Decoder {cell}")


def _seq2seq(rng, cell="lstm", num_layers=2, dropout=0.0):
    enc = Encoder(5, 3, 2, num_layers, dropout=dropout, cell=cell, dtype=np.float64)
    dec = Decoder(4, 3, 3, num_layers, dropout=dropout, cell=cell, dtype=np.float64)
    model = Seq2Seq(enc, dec)
    randomize_parameters(model, rng)
    return model


@pytest.mark.parametrize(
    "cell, ratio, dropout",
    [("lstm", 0.0, 0.0), ("lstm", 1.0, 0.0), ("lstm", 0.5, 0.0), ("lstm", 0.5, 0.3),
     ("lstm", 1.0, 0.3), ("gru", 0.5, 0.0), ("rnn", 0.5, 0.0)],
)
def test_seq2seq_gradients_of_every_parameter(rng, cell, ratio, dropout):
    """The whole model, teacher forcing replayed by a generator re-seeded per forward, source
    rows of different lengths; the argmax feedback (ratio < 1) is constant under ±eps. Ratio 1
    takes the whole-sequence decoder path, the others the step loop."""
    model = _seq2seq(rng, cell, dropout=dropout)
    src = rng.integers(0, 5, size=(4, 3))
    trg = rng.integers(0, 4, size=(6, 3))
    src_lengths = np.array([2, 4, 3])

    def run():
        reseed_dropout(model, 13)
        out = model(src, trg, ratio, src_lengths=src_lengths, generator=np.random.default_rng(3))
        return out, lambda d: (model.backward(d), {})[1]

    res = gradcheck_module(model, run, max_per_tensor=40)
    flips = model.teacher_forcing_flips
    assert len(flips) == 5
    if ratio == 0.5:
        assert any(flips) and not all(flips), f"want both kinds of step, got flips {flips}"
    else:
        assert all(f == (ratio == 1.0) for f in flips)
    assert_gradcheck(res, f"Seq2Seq {cell} ratio={ratio} dropout={dropout}")


# ---- attention: the ops, bidirectional modules, AttentionSeq2Seq ------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_attention_ops_backward_matches_finite_differences(rng, kind, padded):
    """Query, keys and parameters; context and weights both projected on random gradients."""
    S, B, Hk, A = 5, 3, 4, 3
    Hq = Hk if kind == "dot" else 2
    mask = source_mask([5, 2, 4] if padded else [5, 5, 5], S)
    tensors = {"query": rng.standard_normal((B, Hq)), "keys": rng.standard_normal((S, B, Hk))}
    tensors |= attention_params(rng, kind, Hq, Hk, A)
    names = ops.ATTENTION_PARAMS[kind]
    cache = {}

    def forward():
        context, weights, cache["c"] = ops.attention_forward(
            kind, tensors["query"], tensors["keys"], mask, tuple(tensors[n] for n in names))
        return context, weights

    def backward(d):
        dquery, dkeys, dparams = ops.attention_backward(d[0], cache["c"], d[1])
        return {"query": dquery, "keys": dkeys} | dict(zip(names, dparams))

    assert_gradcheck(gradcheck(forward, backward, tensors), f"{kind} padded={padded}")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_module_gradients_with_padding_and_dropout(rng, cell):
    """Two layers, dropout 0.3 between them (masks replayed), padded rows, random states."""
    T, B, I, H, L = 4, 3, 2, 3, 2
    mod = RECURRENT_MODULES[cell](I, H, L, dropout=0.3, bidirectional=True, dtype=np.float64)
    for p in mod.parameters():
        p.data[...] = 0.6 * rng.standard_normal(p.shape)
    n = 2 if cell == "lstm" else 1
    inputs = {"x": rng.standard_normal((T, B, I))} | {f"s0_{k}": rng.standard_normal((2 * L, B, H)) for k in range(n)}
    lengths = np.array([4, 1, 3])

    def run():
        mod.rng = np.random.default_rng(7)
        s0 = tuple(inputs[f"s0_{k}"] for k in range(n))
        out, final = mod(inputs["x"], s0 if n == 2 else s0[0], lengths=lengths)

        def back(d):
            dx, ds0 = mod.backward(*d, return_state_grads=True)
            ds0 = ds0 if n == 2 else (ds0,)
            return {"x": dx} | {f"s0_{k}": g for k, g in enumerate(ds0)}

        return (out, *final) if n == 2 else (out, final), back

    assert_gradcheck(gradcheck_module(mod, run, inputs=inputs), f"bidirectional {cell}")


@pytest.mark.parametrize(
    "kind, input_feeding, ratio",
    [("bahdanau", True, 0.5), ("bahdanau", False, 1.0), ("general", True, 0.0), ("general", False, 0.5),
     ("dot", True, 1.0), ("dot", False, 0.0)],
)
def test_attention_seq2seq_gradients_of_every_parameter(rng, kind, input_feeding, ratio):
    """Every parameter (non-zero random values, biases included), padded source rows, flips
    replayed. Attention parameters are scaled up so the weights are far from uniform and their
    gradients well above the finite differences' round-off."""
    model = make_attention_seq2seq(kind, input_feeding)
    for name, p in model.named_parameters():
        p.data[...] = (3.0 if ".attention." in name else 1.0) * rng.standard_normal(p.shape)
        assert np.all(p.data != 0.0)
    src, trg = rng.integers(0, 5, (4, 3)), rng.integers(0, 4, (5, 3))
    src_lengths = np.array([2, 4, 3])

    def run():
        out = model(src, trg, ratio, src_lengths=src_lengths, generator=np.random.default_rng(3))
        return out, lambda d: (model.backward(d), {})[1]

    res = gradcheck_module(model, run, max_per_tensor=20)
    flips = model.teacher_forcing_flips
    assert (any(flips) and not all(flips)) if ratio == 0.5 else all(f == (ratio == 1.0) for f in flips)
    w = model.attention_weights
    assert np.all(w[1:][:, ~source_mask(src_lengths, 4)] == 0.0)
    assert_gradcheck(res, f"AttentionSeq2Seq {kind} input_feeding={input_feeding} ratio={ratio}")
