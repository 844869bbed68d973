"""minis2s.trace (minis2s/tracing.py) records what the layers computed, on either path.

- The traced gates and states are the cache entries (exactly) and a step computed here by hand
  (float64 within 1e-12), for LSTM, GRU and RNN, bidirectional and padded, on the reference
  path and on the fused CPU path; both paths give the same named arrays (1e-12).
- The traced step gradients dh, dc equal central differences (float64, <= 1e-7) of the loss with
  respect to a perturbation injected into that step's state, in Seq2Seq (LSTM, GRU, RNN) and
  AttentionSeq2Seq, encoder and decoder, both paths; the traced dx of the encoder's first layer
  sums to the embedding's gradient; the attention weights are the model's.
- Bad use: not a Module, a trace inside a trace; the hook is off outside the block.
"""
import dataclasses

import numpy as np
import pytest
from conftest import GRADCHECK_TOL, SAME_SUMS_F64, check_close

import minis2s
from minis2s import Decoder, Encoder, Seq2Seq, dispatch, gradcheck
from minis2s.models import AttentionDecoder, AttentionEncoder, AttentionSeq2Seq
from minis2s.nn import GRU, LSTM, RNN
from minis2s.ops.activations import sigmoid
from minis2s.ops.recurrent import Steps, live_rows, reverse_time_index
from minis2s.tolerances import KERNEL

F64 = np.float64
PATHS = [pytest.param(True, id="fast"), pytest.param(False, id="reference")]
MODULES = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


@pytest.fixture(autouse=True)
def switch_back():
    yield
    dispatch.set_enabled(None)


def traced_layer(mode, fast, rng, *, bidirectional=True, lengths=(5, 3, 1)):
    """A 2-layer module on random input, traced: (module, x, lengths, trace)."""
    dispatch.set_enabled(fast)
    m = MODULES[mode](4, 3, 2, bidirectional=bidirectional, dtype=F64, rng=np.random.default_rng(7))
    x = rng.standard_normal((5, 3, 4))
    with minis2s.trace(m) as t:
        m(x, lengths=None if lengths is None else np.array(lengths))
    return m, x, lengths, t


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_traced_gates_and_states_are_the_cache_entries(mode, fast, rng):
    m, _, lengths, t = traced_layer(mode, fast, rng)
    (caches, _, _), = m._tape
    for layer, (dir_caches, _) in enumerate(caches):
        for d, cache in enumerate(dir_caches):
            assert (cache.steps.name == "reference") == (not fast or mode == "rnn"), cache.steps.name
            lt = t.layers[f"l{layer}{'_reverse' if d else ''}"]
            H = 3
            for b, n in enumerate(lengths):
                for step in range(n):  # the d-direction's step `step` read position pos
                    pos = n - 1 - step if d else step
                    for k, name in enumerate(lt.gates):
                        g = cache.gates[step, b, k * H:(k + 1) * H]
                        assert np.array_equal(lt.gates[name][pos, b], g), (name, layer, d, step, b)
                    assert np.array_equal(lt.h[pos, b], cache.hs[step + 1, b])
                for pos in range(n, 5):  # padded: no step ran there
                    assert all(not g[pos, b].any() for g in lt.gates.values())


def hand_step(mode, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step by hand, PyTorch's equations -> (gates dict, h, c)."""
    xg, hg = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    H = h.shape[-1]
    if mode == "lstm":
        a = xg + hg
        i, f, g, o = sigmoid(a[:H]), sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
        c = f * c + i * g
        return {"i": i, "f": f, "g": g, "o": o}, o * np.tanh(c), c
    if mode == "gru":
        r, z = sigmoid(xg[:H] + hg[:H]), sigmoid(xg[H:2 * H] + hg[H:2 * H])
        n = np.tanh(xg[2 * H:] + r * hg[2 * H:])
        return {"r": r, "z": z, "n": n}, (1 - z) * n + z * h, None
    return {}, np.tanh(xg + hg), None


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_traced_step_equals_a_step_computed_by_hand(mode, fast, rng):
    m, x, _, t = traced_layer(mode, fast, rng, bidirectional=False, lengths=None)
    for layer in range(2):
        lt = t.layers[f"l{layer}"]
        inp = x if layer == 0 else t.layers["l0"].h  # layer 1 reads layer 0's h (no dropout)
        w = [p.data for p in m.layer_params(layer)]
        for step in range(5):
            h_prev = lt.h0 if step == 0 else lt.h[step - 1]
            c_prev = None if lt.c is None else (lt.c0 if step == 0 else lt.c[step - 1])
            for b in range(3):
                gates, h, c = hand_step(mode, inp[step, b], h_prev[b], None if c_prev is None else c_prev[b], *w)
                for name, g in gates.items():
                    check_close(f"l{layer} {name}[{step}, {b}]", lt.gates[name][step, b], g, SAME_SUMS_F64)
                check_close(f"l{layer} h[{step}, {b}]", lt.h[step, b], h, SAME_SUMS_F64)
                if c is not None:
                    check_close(f"l{layer} c[{step}, {b}]", lt.c[step, b], c, SAME_SUMS_F64)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_both_paths_give_the_same_named_arrays(mode, rng):
    arrays = []
    for fast in (True, False):
        m, x, lengths, _ = traced_layer(mode, fast, np.random.default_rng(3))
        with minis2s.trace(m) as t:
            out, _ = m(x, lengths=np.array(lengths))
            m.backward(np.random.default_rng(4).standard_normal(out.shape))
        arrays.append(t.arrays())
    fast, ref = arrays
    assert sorted(fast) == sorted(ref) and "l1_reverse.dh" in fast
    for name in ref:
        check_close(name, fast[name], ref[name], KERNEL[np.dtype(F64)])


# ---- gradients: the traced dh, dc against finite differences ------------------------------------

def seq2seq(cell):
    return Seq2Seq(Encoder(9, 4, 3, 2, cell=cell, dtype=F64), Decoder(8, 4, 3, 2, cell=cell, dtype=F64))


def attention_model():
    return AttentionSeq2Seq(AttentionEncoder(9, 3, 3, 2, dtype=F64), AttentionDecoder(8, 4, 3, 2, 6, dtype=F64))


def with_forward_step(cell, after):
    """``cell`` whose reference forward step calls ``after(t, hg, hs, xg, out, lengths, *rest)``
    once the real step has written its state."""
    step = cell.reference.forward_step

    def forward_step(t, hg, hs, xg, out, lengths, *rest):
        step(t, hg, hs, xg, out, lengths, *rest)
        after(t, hg, hs, xg, out, lengths, *rest)

    return dataclasses.replace(cell, reference=Steps.of("spy", forward_step, cell.reference.backward_step))


def injecting(cell, target, delta):
    """``cell`` whose step number ``target`` (counting every step of the module) adds ``delta``
    (a tuple of (B, H)) to the state it writes (on the rows it ran: the output too): the point
    where dL/dstate is measured."""
    calls = [0]

    def after(t, hg, hs, xg, out, lengths, *rest):
        if calls[0] == target:
            live, _ = live_rows(t, lengths)
            states = (hs,) + ((rest[1],) if cell.n_states == 2 else ())  # the LSTM's cs follows its bias
            for s, d in zip(states, delta):
                s[t + 1] += live * d
            out[t] += live * delta[0]
        calls[0] += 1

    return with_forward_step(cell, after)


def call_number(model, module, run, h_row0):
    """The number of the step (in ``module``) whose new h has ``h_row0`` as its row 0."""
    seen = []
    cell = module.cell
    module.cell = with_forward_step(cell, lambda t, hg, hs, *rest: seen.append(hs[t + 1][0].copy()))
    try:
        with dispatch.disabled():
            run()
    finally:
        module.cell = cell
        model.clear_tape()
    hits = [k for k, h in enumerate(seen) if np.allclose(h, h_row0, rtol=0, atol=1e-12)]
    assert len(hits) == 1, hits
    return hits[0]


CASES = [  # model, which module, the trace's key, the step
    ("lstm", "encoder", "encoder.rnn.l0", 2), ("lstm", "decoder", "decoder.rnn.l1", 1),
    ("gru", "encoder", "encoder.rnn.l1", 1), ("gru", "decoder", "decoder.rnn.l0", 2),
    ("rnn", "encoder", "encoder.rnn.l0", 3), ("rnn", "decoder", "decoder.rnn.l1", 0),
    ("attention", "encoder", "encoder.rnn.l0_reverse", 1), ("attention", "encoder", "encoder.rnn.l1", 3),
    ("attention", "decoder", "decoder.rnn.l0", 2),
]


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("kind, where, key, step", CASES)
def test_traced_state_gradients_equal_finite_differences(kind, where, key, step, fast):
    rng = np.random.default_rng(11)
    model = attention_model() if kind == "attention" else seq2seq(kind)
    module = getattr(model, where).rnn
    src, trg = rng.integers(4, 9, size=(5, 3)), rng.integers(4, 8, size=(4, 3))
    lengths = np.array([5, 4, 2])  # row 0 full: it identifies the step; rows 1, 2 padded

    def run():
        return model(src, trg, 1.0, src_lengths=lengths, generator=np.random.default_rng(0))

    def traced(dout):
        dispatch.set_enabled(fast)
        with minis2s.trace(model) as t:
            model(src, trg, 1.0, src_lengths=lengths, generator=np.random.default_rng(0))
            model.backward(dout)
        dispatch.set_enabled(None)
        return t.layers[key]

    lt = traced(np.ones((4, 3, 8)))
    target = call_number(model, module, run, lt.h[step, 0])
    B, H = lt.h.shape[1:]
    delta = {"h": np.zeros((B, H))}  # the injection point: the state plus 0, perturbed by ±eps
    if lt.c is not None:
        delta["c"] = np.zeros((B, H))

    def forward():
        cell = module.cell
        module.cell = injecting(cell, target, tuple(delta.values()))
        try:
            with dispatch.disabled():
                return run()
        finally:
            module.cell = cell

    # The injection hits one step of the direction's own order; the trace's time is reading order,
    # which for the reverse direction of a padded batch is another position in each row.
    rows = np.arange(B)
    pos = reverse_time_index(5, B, lengths, np)[4 - step] if key.endswith("_reverse") else np.full(B, step)

    def backward(dout):
        model.clear_tape()
        lt = traced(dout)
        return {"h": lt.dh[pos, rows], **({"c": lt.dc[pos, rows]} if lt.c is not None else {})}

    result = gradcheck(forward, backward, delta)
    assert result.max_rel_error < GRADCHECK_TOL, result
    got = backward(np.random.default_rng(5).standard_normal((4, 3, 8)))
    assert np.abs(got["h"]).max() > 1e-6  # a real gradient reached this step, not an empty check


@pytest.mark.parametrize("fast", PATHS)
def test_first_layer_dx_is_the_embedding_gradient_and_attention_is_the_models(fast):
    dispatch.set_enabled(fast)
    rng = np.random.default_rng(2)
    model = attention_model()
    src, trg = rng.integers(4, 9, size=(5, 3)), rng.integers(4, 8, size=(4, 3))
    with minis2s.trace(model) as t:
        out = model(src, trg, 1.0, src_lengths=np.array([5, 4, 2]))
        model.zero_grad()
        model.backward(rng.standard_normal(out.shape))
    demb = t.layers["encoder.rnn.l0"].dx + t.layers["encoder.rnn.l0_reverse"].dx  # (S, B, E)
    grad = np.zeros_like(model.encoder.embedding.weight.data)
    np.add.at(grad, src, demb)
    check_close("embedding grad from the traced dx", grad, model.encoder.embedding.weight.grad, SAME_SUMS_F64)
    assert np.array_equal(t.attention["decoder.attention"], model.attention_weights[1:])
    assert t.attention["decoder.attention"].shape == (3, 5, 3)
    assert t.arrays()["decoder.attention.weights"].shape == (3, 5, 3)


def test_trace_records_only_inside_its_block_and_only_its_model(rng):
    a, b = LSTM(3, 2, dtype=F64), LSTM(3, 2, dtype=F64)
    x = rng.standard_normal((4, 2, 3))
    assert a._trace is None and b._trace is None
    with minis2s.trace(a) as t:
        assert a._trace is t and b._trace is None  # the hook is the traced model's own
        a(x)
        b(x)
    assert a._trace is None and list(t.layers) == ["l0"]
    a(x)  # outside: nothing more is recorded
    assert t.layers["l0"].h.shape == (4, 2, 2) and t.layers["l0"].dh is None
    with pytest.raises(ZeroDivisionError), minis2s.trace(a):
        raise ZeroDivisionError
    assert a._trace is None  # an exception inside the block turns the hook off
    with minis2s.trace(a) as ta, minis2s.trace(b) as tb:  # two models, two traces at once
        a(x)
        b(x)
    assert list(ta.layers) == list(tb.layers) == ["l0"]


def test_bad_use_is_one_clear_error():
    with pytest.raises(TypeError, match="model must be a minis2s Module"), minis2s.trace(42):
        pass
    m = LSTM(3, 2, dtype=F64)
    with minis2s.trace(m), pytest.raises(RuntimeError, match="already recording"), minis2s.trace(m):
        pass
