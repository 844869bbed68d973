"""Attention, the bidirectional encoder and AttentionSeq2Seq: proven like the rest of minis2s.

- the attention ops (bahdanau, general, dot) with padded sources: finite differences of the
  query, keys, parameters, with the weights as an output too (GRADCHECK_TOL); against torch
  (F64_TOL); padded positions get weight exactly 0, even when their scores are inf or NaN;
- bidirectional LSTM/GRU/RNN against torch's on packed sequences (outputs, h_n, c_n, every
  gradient within F64_TOL), fast path and reference, and by finite differences;
- the whole AttentionSeq2Seq: finite differences of every parameter (each score, with and
  without input feeding, teacher forcing 0, 1, 0.5), and against its torch twin
  (tests/torch_attention.py) over hypothesis-drawn shapes and padded batches, flips replayed;
- a padded batch equals each row run alone; beam 1 equals greedy; the model trains;
- G2P: ``--arch attention`` trains through the CLI and ``predict --plot`` draws the heatmap.

Shapes: S source, T target steps, B batch, L layers, He encoder hidden per direction, H decoder
hidden, E embedding, V vocabulary, Hq/Hk query/key sizes, A attention size.
"""
import contextlib
import json

import numpy as np
import pytest
import torch
from conftest import F64_TOL, GRADCHECK_TOL, check_close
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch_attention import TorchAttention, TorchAttentionSeq2Seq

from minis2s import (
    AttentionDecoder,
    AttentionEncoder,
    AttentionSeq2Seq,
    dispatch,
    gradcheck,
    gradcheck_module,
    ops,
)
from minis2s.data import Vocab
from minis2s.decode import beam_search, greedy_decode
from minis2s.nn import GRU, LSTM, RNN, Attention, CrossEntropyLoss
from minis2s.optim import Adam
from minis2s.random import manual_seed

F64 = np.float64
KINDS = ["bahdanau", "general", "dot"]
torch.set_num_threads(1)
HYPOTHESIS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tt(a, requires_grad=False):
    return torch.from_numpy(np.array(a)).requires_grad_(requires_grad)


def assert_gradcheck(result, what):
    assert result.max_rel_error <= GRADCHECK_TOL, f"{what}: {result}"


def check_all(ours: dict, ref: dict, tol=F64_TOL):
    assert sorted(ours) == sorted(ref), f"tensor names differ: {sorted(ours)} vs {sorted(ref)}"
    for name, r in ref.items():
        check_close(name, ours[name], r, tol)


def attention_params(rng, kind, Hq, Hk, A, scale=1.0):
    shapes = {"bahdanau": [(A, Hq), (A, Hk), (A,)], "general": [(Hq, Hk)], "dot": []}[kind]
    return dict(zip(ops.ATTENTION_PARAMS[kind], (scale * rng.standard_normal(s) for s in shapes)))


def source_mask(lengths, S):
    return np.arange(S)[:, None] < np.asarray(lengths)[None, :]  # (S, B)


# ---- the attention ops ------------------------------------------------------------------------
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("kind", KINDS)
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


@pytest.mark.parametrize("kind", KINDS)
def test_attention_ops_match_torch_float64(rng, kind):
    S, B, Hk, A = 6, 4, 3, 5
    Hq = Hk if kind == "dot" else 4
    mask = source_mask([6, 1, 3, 5], S)
    query, keys = rng.standard_normal((B, Hq)), rng.standard_normal((S, B, Hk))
    params = attention_params(rng, kind, Hq, Hk, A)
    dcontext, dweights = rng.standard_normal((B, Hk)), rng.standard_normal((S, B))
    context, weights, cache = ops.attention_forward(kind, query, keys, mask, tuple(params.values()))
    dquery, dkeys, dparams = ops.attention_backward(dcontext, cache, dweights)
    ours = {"context": context, "weights": weights, "dquery": dquery, "dkeys": dkeys}
    ours |= {f"grad {n}": g for n, g in zip(params, dparams)}

    ref = TorchAttention(kind, Hq, Hk, A).double()
    ref.load_state_dict({k: tt(v) for k, v in params.items()}, strict=True)
    tq, tk = tt(query, True), tt(keys, True)
    tc, tw = ref(tq, tk, tt(mask))
    ((tc * tt(dcontext)).sum() + (tw * tt(dweights)).sum()).backward()
    theirs = {"context": tc.detach(), "weights": tw.detach(), "dquery": tq.grad, "dkeys": tk.grad}
    theirs |= {f"grad {n}": p.grad for n, p in ref.named_parameters()}
    check_all(ours, theirs)


@pytest.mark.parametrize("kind", KINDS)
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


def test_attention_module_refuses_bad_settings():
    with pytest.raises(ValueError, match="kind"):
        Attention("luong", 3, 3)
    with pytest.raises(ValueError, match="query_size == key_size"):
        Attention("dot", 3, 4)
    assert [n for n, _ in Attention("bahdanau", 3, 4, 5).named_parameters()] == ["weight_query", "weight_key", "v"]


# ---- bidirectional recurrent modules ---------------------------------------------------------
OURS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
TORCH = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def torch_bidirectional(cell, state_dict, x, states, lengths, dout, dfinal):
    """torch's bidirectional module on a packed sequence: outputs, finals and every gradient."""
    T, _, I = x.shape
    L2, _, H = states[0].shape
    ref = TORCH[cell](I, H, num_layers=L2 // 2, bidirectional=True).double()
    assert list(ref.state_dict()) == list(state_dict), "parameter names/order must be torch's"
    ref.load_state_dict({k: tt(v) for k, v in state_dict.items()}, strict=True)
    tx, ts = tt(x, True), [tt(s, True) for s in states]
    out, final = ref(pack_padded_sequence(tx, tt(lengths), enforce_sorted=False),
                     tuple(ts) if cell == "lstm" else ts[0])
    out, _ = pad_packed_sequence(out, total_length=T)
    finals = final if cell == "lstm" else (final,)
    ((out * tt(dout)).sum() + sum((f * tt(d)).sum() for f, d in zip(finals, dfinal))).backward()
    res = {"out": out.detach(), "dx": tx.grad} | {f"final{k}": f.detach() for k, f in enumerate(finals)}
    res |= {f"dstate0_{k}": s.grad for k, s in enumerate(ts)}
    return res | {f"grad {k}": p.grad for k, p in ref.named_parameters()}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@HYPOTHESIS
@given(L=st.integers(1, 2), B=st.integers(1, 3), T=st.integers(1, 5), I=st.integers(1, 4),
       H=st.integers(1, 4), padded=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_bidirectional_modules_match_torch_on_packed_sequences(cell, L, B, T, I, H, padded, seed):
    """out (T, B, 2H), h_n/c_n (2L, B, H), dx, dh0/dc0 and every parameter, fast path and
    reference, float64 within F64_TOL."""
    rng = np.random.default_rng(seed)
    n = 2 if cell == "lstm" else 1
    mod = OURS[cell](I, H, L, bidirectional=True, dtype=F64, rng=rng)
    x = rng.standard_normal((T, B, I))
    states = [rng.standard_normal((2 * L, B, H)) for _ in range(n)]
    dout = rng.standard_normal((T, B, 2 * H))
    dfinal = [rng.standard_normal((2 * L, B, H)) for _ in range(n)]
    lengths = rng.integers(1, T + 1, B) if padded else np.full(B, T)
    lengths[rng.integers(B)] = T
    ref = torch_bidirectional(cell, mod.state_dict(), x, states, lengths, dout, dfinal)
    for fast in (True, False):
        with contextlib.nullcontext() if fast else dispatch.disabled():
            mod.zero_grad()
            out, final = mod(x, tuple(states) if n == 2 else states[0], lengths=lengths if padded else None)
            dx, ds0 = mod.backward(dout, *dfinal, return_state_grads=True)
        finals, ds0 = (final, ds0) if n == 2 else ((final,), (ds0,))
        ours = {"out": out, "dx": dx} | {f"final{k}": f for k, f in enumerate(finals)}
        ours |= {f"dstate0_{k}": d for k, d in enumerate(ds0)}
        check_all(ours | {f"grad {k}": p.grad for k, p in mod.named_parameters()}, ref)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_module_gradients_with_padding_and_dropout(rng, cell):
    """Two layers, dropout 0.3 between them (masks replayed), padded rows, random states."""
    T, B, I, H, L = 4, 3, 2, 3, 2
    mod = OURS[cell](I, H, L, dropout=0.3, bidirectional=True, dtype=F64)
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


# ---- AttentionSeq2Seq -------------------------------------------------------------------------
def make_model(kind, input_feeding, *, src_vocab=5, trg_vocab=4, He=2, H=4, E=3, L=2, dropout=0.0):
    enc = AttentionEncoder(src_vocab, He, E, L, dropout=dropout, dtype=F64)
    dec = AttentionDecoder(trg_vocab, H, E, L, 2 * He, attention=kind, input_feeding=input_feeding,
                           dropout=dropout, dtype=F64)
    return AttentionSeq2Seq(enc, dec)


@pytest.mark.parametrize(
    "kind, input_feeding, ratio",
    [("bahdanau", True, 0.5), ("bahdanau", False, 1.0), ("general", True, 0.0), ("general", False, 0.5),
     ("dot", True, 1.0), ("dot", False, 0.0)],
)
def test_attention_seq2seq_gradients_of_every_parameter(rng, kind, input_feeding, ratio):
    """Every parameter (non-zero random values, biases included), padded source rows, flips
    replayed. Attention parameters are scaled up so the weights are far from uniform and their
    gradients well above the finite differences' round-off."""
    model = make_model(kind, input_feeding)
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


@st.composite
def attention_shapes(draw):
    B = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(KINDS))
    He = draw(st.integers(1, 3))
    return {
        "kind": kind, "input_feeding": draw(st.booleans()), "L": draw(st.integers(1, 2)), "B": B,
        "lengths": draw(st.lists(st.integers(1, 5), min_size=B, max_size=B)), "T": draw(st.integers(2, 5)),
        "He": He, "H": 2 * He if kind == "dot" else draw(st.integers(1, 5)), "E": draw(st.integers(1, 4)),
        "src_vocab": draw(st.integers(2, 6)), "trg_vocab": draw(st.integers(2, 6)),
        "torch_init": draw(st.booleans()), "seed": draw(st.integers(0, 2**32 - 1)),
    }


@pytest.mark.parametrize("ratio", [0.0, 1.0, 0.5])
@HYPOTHESIS
@given(shape=attention_shapes())
def test_attention_seq2seq_matches_its_torch_twin_float64(ratio, shape):
    """Outputs, attention weights, the cross-entropy and every parameter gradient within F64_TOL;
    weights loaded in either direction; padded rows; the twin replays our coin flips."""
    sh = shape
    rng = np.random.default_rng(sh["seed"])
    ours = make_model(sh["kind"], sh["input_feeding"], src_vocab=sh["src_vocab"], trg_vocab=sh["trg_vocab"],
                      He=sh["He"], H=sh["H"], E=sh["E"], L=sh["L"])
    torch.manual_seed(sh["seed"] % 2**31)
    ref = TorchAttentionSeq2Seq(sh["src_vocab"], sh["trg_vocab"], sh["He"], sh["H"], sh["E"], sh["L"],
                                sh["kind"], sh["input_feeding"]).double()
    assert list(ours.state_dict()) == list(ref.state_dict()), "state-dict keys must match"
    if sh["torch_init"]:
        ours.load_state_dict(ref.state_dict(), strict=True)
    else:
        ref.load_state_dict({k: tt(v) for k, v in ours.state_dict().items()}, strict=True)
    lengths = np.array(sh["lengths"])
    S, T, B, V = int(lengths.max()), sh["T"], sh["B"], sh["trg_vocab"]
    src = rng.integers(0, sh["src_vocab"], (S, B))  # padded positions hold arbitrary ids: inert
    trg = rng.integers(0, V, (T, B))
    trg[1, 0] = 1  # at least one target the loss does not ignore
    out = ours(src, trg, ratio, src_lengths=lengths, generator=np.random.default_rng(sh["seed"] + 1))
    flips = ours.teacher_forcing_flips
    for t in range(1, T - 1):  # an argmax fed back must not be a near tie
        if not flips[t - 1]:
            top2 = np.sort(out[t], axis=1)[:, -2:]
            assume(np.min(top2[:, 1] - top2[:, 0]) > 1e-9)
    ce = CrossEntropyLoss(ignore_index=0)
    loss = ce(out[1:].reshape(-1, V), trg[1:].reshape(-1))
    dout = np.zeros_like(out)
    dout[1:] = ce.backward(1.0).reshape(T - 1, B, V)
    ours.backward(dout)
    tout, tweights = ref(tt(src), tt(trg), tt(lengths), flips)
    tloss = torch.nn.functional.cross_entropy(tout[1:].reshape(-1, V), tt(trg[1:].reshape(-1)), ignore_index=0)
    tloss.backward()
    mine = {"outputs": out, "attention": ours.attention_weights, "loss": loss}
    mine |= {f"grad {k}": p.grad for k, p in ours.named_parameters()}
    theirs = {"outputs": tout.detach(), "attention": tweights.detach(), "loss": tloss.item()}
    theirs |= {f"grad {k}": p.grad for k, p in ref.named_parameters()}
    check_all(mine, theirs)


def padded_source(rng, lengths, vocab=9):
    src = np.zeros((max(lengths), len(lengths)), dtype=np.int64)
    for b, n in enumerate(lengths):
        src[:n, b] = rng.integers(4, vocab, n)
    return src


@pytest.mark.parametrize("kind", KINDS)
def test_padded_batch_equals_each_row_run_alone(kind):
    """Outputs and attention of every row are those of the row alone (its own length)."""
    manual_seed(11)
    model = make_model(kind, True, src_vocab=9, trg_vocab=7, He=3, H=6, E=4)
    rng = np.random.default_rng(5)
    lengths = [3, 6, 1, 4]
    src, trg = padded_source(rng, lengths), rng.integers(0, 7, (5, 4))
    out = model(src, trg, 0.0, src_lengths=np.array(lengths), generator=np.random.default_rng(0))
    weights = model.attention_weights.copy()
    for b, n in enumerate(lengths):
        alone = model(src[:n, b : b + 1], trg[:, b : b + 1], 0.0, generator=np.random.default_rng(0))
        check_close(f"outputs of row {b}", out[:, b], alone[:, 0], 1e-12)
        check_close(f"attention of row {b}", weights[:, :n, b], model.attention_weights[:, :, 0], 1e-12)
        assert np.all(weights[:, n:, b] == 0.0)


@pytest.mark.parametrize("kind", ["bahdanau", "general"])
def test_beam_search_with_attention_width_1_equals_greedy_and_rows_are_independent(kind):
    manual_seed(3)
    model = make_model(kind, True, src_vocab=13, trg_vocab=9, He=4, H=8, E=6).eval()
    model.decoder.fc_out.weight.data *= 4.0  # peaked distributions: greedy paths of several lengths
    rng = np.random.default_rng(2)
    lengths = np.array([5, 2, 7, 3])
    src = padded_source(rng, lengths, 13)
    kw = {"max_len": 8, "sos_id": Vocab.sos_id, "eos_id": Vocab.eos_id}
    greedy = greedy_decode(model, src, lengths, **kw)
    beam1 = beam_search(model, src, lengths, beam=1, **kw)
    assert [r[0][0] for r in beam1] == greedy
    beam4 = beam_search(model, src, lengths, beam=4, nbest=3, **kw)
    for b, n in enumerate(lengths):  # a row's n-best does not depend on the other rows (keys reordered)
        alone = beam_search(model, src[:n, b : b + 1], np.array([n]), beam=4, nbest=3, **kw)[0]
        assert [h for h, _ in alone] == [h for h, _ in beam4[b]]
        np.testing.assert_allclose([s for _, s in alone], [s for _, s in beam4[b]], rtol=1e-12)
        scores = [s for _, s in beam4[b]]
        assert scores == sorted(scores, reverse=True)


def test_greedy_decoding_follows_the_forward_with_argmax_feedback():
    """decode_step (the decoding interface) and forward (training) are the same computation:
    greedy tokens = the argmax path of forward with teacher forcing 0, row by row."""
    manual_seed(4)
    model = make_model("bahdanau", True, src_vocab=13, trg_vocab=9, He=4, H=8, E=6).eval()
    model.decoder.fc_out.weight.data *= 4.0
    lengths = np.array([5, 2, 7, 3])
    src = padded_source(np.random.default_rng(8), lengths, 13)
    greedy = greedy_decode(model, src, lengths, max_len=8, sos_id=Vocab.sos_id, eos_id=Vocab.eos_id)
    out = model(src, np.full((9, 4), Vocab.sos_id), 0.0, src_lengths=lengths)
    for b, ids in enumerate(greedy):
        path = [int(i) for i in out[1:, b].argmax(axis=1)]
        assert path[: len(ids)] == ids and (len(ids) == 8 or path[len(ids)] == Vocab.eos_id)


def test_attention_seq2seq_learns_to_copy_through_attention():
    """A few Adam steps on a copy task drive the loss well down: the model trains end to end."""
    manual_seed(0)
    model = make_model("general", True, src_vocab=8, trg_vocab=8, He=8, H=16, E=8, L=1)
    rng = np.random.default_rng(0)
    src = rng.integers(3, 8, (5, 16))
    trg = np.concatenate([np.full((1, 16), 1), src, np.full((1, 16), 2)])  # <sos> copy <eos>
    ce, opt = CrossEntropyLoss(), Adam(model.parameters(), lr=0.03)
    losses = []
    for _ in range(40):
        model.zero_grad()
        out = model(src, trg, 1.0, generator=np.random.default_rng(0))
        losses.append(ce(out[1:].reshape(-1, 8), trg[1:].reshape(-1)))
        dout = np.zeros_like(out)
        dout[1:] = ce.backward().reshape(out[1:].shape)
        model.backward(dout)
        opt.step()
    assert losses[-1] < 0.25 * losses[0], losses


def test_attention_seq2seq_refuses_mismatched_parts_and_a_backward_without_forward():
    enc = AttentionEncoder(5, 2, 3, 1, dtype=F64)
    with pytest.raises(ValueError, match="key_dim"):
        AttentionSeq2Seq(enc, AttentionDecoder(4, 4, 3, 1, 6, dtype=F64))
    with pytest.raises(ValueError, match="num_layers"):
        AttentionSeq2Seq(enc, AttentionDecoder(4, 4, 3, 2, 4, dtype=F64))
    model = AttentionSeq2Seq(enc, AttentionDecoder(4, 4, 3, 1, 4, dtype=F64))
    with pytest.raises(RuntimeError, match="without a matching forward"):
        model.backward(np.zeros((3, 2, 4)))


# ---- G2P: the attention architecture through the CLI ------------------------------------------
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


def test_build_model_checks_the_attention_settings():
    """The settings are checked when the ModelConfig is made, before any model is built."""
    from minis2s.g2p import G2PTask
    from minis2s.models import ModelConfig, build_model

    task = G2PTask(ModelConfig(), train_words={"a": [["AH"]]}, dev_words={})
    sizes = (len(task.src_vocab), len(task.trg_vocab))
    model = build_model(ModelConfig(arch="attention", hidden=6, layers=2, attention="dot"), *sizes)
    assert isinstance(model, AttentionSeq2Seq) and model.encoder.rnn.hidden_size == 3
    for bad, msg in [({"cell": "gru"}, "LSTM"), ({"hidden": 7}, "even"),
                     ({"attention": "luong"}, "attention must be one of")]:
        with pytest.raises(ValueError, match=msg):
            ModelConfig(arch="attention", **bad)
        with pytest.raises(ValueError, match=msg):  # and the same from a model.json's settings
            ModelConfig.from_dict({"arch": "attention", **bad})
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="transformer")
