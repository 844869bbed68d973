"""minis2s against PyTorch: outputs and the gradients of inputs, initial states and every
parameter, float64 within F64_TOL and float32 within F32_TOL.

The torch twin is ``tests/torch_seed.py`` (the PyTorch skeleton with its forward completed): our
``state_dict()`` loads into it strictly, a torch state dict loads into ours, and both models take
the same teacher-forcing path (the torch twin replays ``model.teacher_forcing_flips``).
Padding (``lengths=``) is checked against ``pack_padded_sequence`` / ``pad_packed_sequence``.
Hypothesis draws the shapes: tiny vocabularies, one-step sequences, batch 1, hidden 1.

Attention (the last section): the three scores' ops (padded sources), the bidirectional
LSTM/GRU/RNN on packed sequences (fast path and reference), and AttentionSeq2Seq against its own
twin, ``tests/torch_attention.py``, over padded batches with the flips replayed; float64.

Shapes: S source steps, T steps, B batch, I input, H hidden, L layers, E embedding, V vocabulary;
attention: He encoder hidden per direction, Hq/Hk query/key sizes, A attention size.
"""
import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    ATTENTION_KINDS,
    F32_TOL,
    F64_TOL,
    TORCH_F64_GRADIENT_FLOOR,
    attention_params,
    check_close,
    make_attention_seq2seq,
    source_mask,
)
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch_attention import TorchAttention, TorchAttentionSeq2Seq
from torch_seed import make_seed_model

from minis2s import Decoder, Encoder, Seq2Seq, dispatch, ops
from minis2s.nn import GRU, LSTM, RNN, CrossEntropyLoss, Dropout, Embedding, Linear

DTYPES = {"float64": (np.float64, torch.float64, F64_TOL), "float32": (np.float32, torch.float32, F32_TOL)}
OURS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
TORCH = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
TORCH_CELLS = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}
OP_CELLS = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}  # our name -> ops.CELLS key
N_STATES = {"lstm": 2, "gru": 1, "rnn": 1}
torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and contend with other test runs)
HYPOTHESIS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dtype_names = pytest.mark.parametrize("dtype", list(DTYPES))
cells = pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])


def tt(a, requires_grad=False):
    """A torch copy of a NumPy array (int64 ids stay int64)."""
    return torch.from_numpy(np.array(a)).requires_grad_(requires_grad)


def grad(t):
    return t.grad.detach().numpy()


# Float32: the forward values (outputs, states, losses) are compared as one vector, and the
# gradients (every input, state and parameter gradient) as another, so the 1e-4 is relative to
# the scale of all the values of that kind. A float32 entry carries round-off of ~1e-7 of the
# terms summed into it, not of the sum: where those terms cancel (a bias gradient summed over
# T·B positions, a vanishing gradient through layers with hidden size 1, a GRU state
# (1 - z)·n + z·h of O(1) terms that lands at 7.5e-6) a tensor whose entries are all ~1e-4 of
# the rest cannot be resolved to 1e-4 of *itself* by either library (measured over thousands of
# hypothesis draws: up to 4e-4 per gradient tensor, both libraries alike; 5.9e-3 for that GRU
# state, an absolute difference of 4.5e-8). Float64 keeps the per-tensor check (1e-9), each
# gradient tensor against at least 1e-6 of the largest gradient (TORCH_F64_GRADIENT_FLOOR says
# why), and every hypothesis draw below runs in both dtypes.


def is_gradient(name):
    return name.startswith(("grad ", "d"))


def check_all(ours: dict, ref: dict, tol):
    """Compare every named tensor (both sides must name the same ones) within ``tol``: float64
    tensor by tensor; float32 as two vectors, the forward values and the gradients (see above)."""
    assert sorted(ours) == sorted(ref), f"tensor names differ: {sorted(ours)} vs {sorted(ref)}"
    if tol != F32_TOL:
        grads = [np.max(np.abs(np.asarray(r, dtype=np.float64)), initial=0.0) for n, r in ref.items()
                 if is_gradient(n)]
        floor = TORCH_F64_GRADIENT_FLOOR * max(grads, default=0.0)
        for name, r in ref.items():
            check_close(name, ours[name], r, tol, floor if is_gradient(name) else 0.0)
        return
    for kind, names in (("forward value", [n for n in ref if not is_gradient(n)]),
                        ("gradient", [n for n in ref if is_gradient(n)])):
        if not names:
            continue
        parts = [np.ravel(np.asarray(ref[n], dtype=np.float64)) for n in names]  # torch tensors too
        flat_ours = np.concatenate([np.ravel(np.asarray(ours[n], dtype=np.float64)) for n in names])
        flat_ref = np.concatenate(parts)
        ends = np.cumsum([p.size for p in parts])
        worst = names[int(np.searchsorted(ends, np.argmax(np.abs(flat_ours - flat_ref)), side="right"))]
        check_close(f"every {kind} as one vector (worst entry in {worst!r})", flat_ours, flat_ref, tol)


def test_check_all_float64_floor_still_catches_a_wrong_small_gradient(rng):
    """The floor forgives round-off of a cancelling sum (1e-19 beside a 0.8 gradient), not an
    error of a thousandth of that small tensor, nor any error in a forward value."""
    small = rng.standard_normal((3, 2)) * 4e-11
    ref = {"loss": 1.3, "grad big": rng.standard_normal(5) * 0.8, "grad small": small}
    ours = dict(ref) | {"grad small": small + 1e-19}
    check_all(ours, ref, F64_TOL)
    with pytest.raises(AssertionError, match="grad small"):
        check_all(dict(ref) | {"grad small": small * 1.001}, ref, F64_TOL)
    with pytest.raises(AssertionError, match="loss"):
        check_all(dict(ref) | {"loss": 1.3 * (1 + 1e-8)}, ref, F64_TOL)


def param_grads(ours_module, torch_module, prefix="grad "):
    """{grad name: (ours, torch)} for every parameter, keys checked to match exactly."""
    tp = dict(torch_module.named_parameters())
    mine = dict(ours_module.named_parameters())
    assert list(mine) == list(tp), f"parameter names differ: {list(mine)} vs {list(tp)}"
    ours = {prefix + k: p.grad for k, p in mine.items()}
    ref = {prefix + k: grad(p) for k, p in tp.items()}
    return ours, ref


def load_ours_into_torch(ours_module, torch_module):
    torch_module.load_state_dict({k: torch.from_numpy(v) for k, v in ours_module.state_dict().items()},
                                 strict=True)


# ---- dense ops ------------------------------------------------------------------------------


@dtype_names
def test_embedding_forward_and_weight_gradient_match_torch_with_repeated_ids(rng, dtype):
    nd, td, tol = DTYPES[dtype]
    emb = Embedding(6, 3, dtype=nd)
    ids = np.array([[0, 5, 0, 2], [2, 2, 5, 1]])  # repeats within and across rows
    dout = rng.standard_normal((2, 4, 3)).astype(nd)
    out = emb(ids)
    emb.backward(dout)
    ref = torch.nn.Embedding(6, 3).to(td)
    load_ours_into_torch(emb, ref)
    tout = ref(tt(ids))
    (tout * tt(dout)).sum().backward()
    check_all({"out": out, "grad weight": emb.weight.grad}, {"out": tout.detach(), "grad weight": grad(ref.weight)}, tol)


@dtype_names
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3)], ids=["2d", "3d"])
def test_linear_forward_and_gradients_match_torch(rng, dtype, shape, bias):
    nd, td, tol = DTYPES[dtype]
    lin = Linear(3, 4, bias=bias, dtype=nd)
    x = rng.standard_normal(shape).astype(nd)
    dy = rng.standard_normal(shape[:-1] + (4,)).astype(nd)
    y = lin(x)
    dx = lin.backward(dy)
    ref = torch.nn.Linear(3, 4, bias=bias).to(td)
    load_ours_into_torch(lin, ref)
    tx = tt(x, True)
    ty = ref(tx)
    (ty * tt(dy)).sum().backward()
    ours, theirs = param_grads(lin, ref)
    check_all(ours | {"y": y, "dx": dx}, theirs | {"y": ty.detach(), "dx": grad(tx)}, tol)


@dtype_names
def test_dropout_scales_kept_values_like_torch_and_is_identity_in_eval(rng, dtype):
    """Masks come from different generators, so compare the convention: kept elements are
    scaled by 1/(1-p) in both, dropped ones are 0, and eval mode returns the input."""
    nd, _, tol = DTYPES[dtype]
    p = 0.3
    x = (rng.uniform(0.5, 2.0, (40, 50)) * rng.choice([-1, 1], (40, 50))).astype(nd)
    drop = Dropout(p, rng=np.random.default_rng(0))
    out = drop(x)
    dout = rng.standard_normal(x.shape).astype(nd)
    dx = drop.backward(dout)
    tout = F.dropout(tt(x), p, training=True).numpy()
    for name, o in (("ours", out), ("torch", tout)):
        kept = o != 0
        assert 0.6 < kept.mean() < 0.8, f"{name}: kept fraction {kept.mean()} for p={p}"
        check_close(f"{name} kept scale", o[kept] / x[kept], np.full(kept.sum(), 1.0 / (1.0 - p)), tol)
    check_close("dx = dout * mask", dx, dout * (out / x), tol)
    drop.eval()
    assert np.array_equal(drop(x), F.dropout(tt(x), p, training=False).numpy())


@dtype_names
@pytest.mark.parametrize("ignore_index", [-100, 0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
def test_cross_entropy_loss_and_logit_gradient_match_torch_with_ignore_index(rng, dtype, ignore_index, smoothing):
    """Loss and logit gradient as F.cross_entropy's, label smoothing included (torch spreads ε
    over all V classes, the ignored class too, and skips ignored rows: so do we)."""
    nd, _, tol = DTYPES[dtype]
    logits = (3.0 * rng.standard_normal((7, 5))).astype(nd)
    targets = np.array([1, ignore_index, 4, 2, ignore_index, 3, 1])
    ce = CrossEntropyLoss(ignore_index=ignore_index, label_smoothing=smoothing)
    loss = ce(logits, targets)
    dlogits = ce.backward(0.7)
    tl = tt(logits, True)
    tloss = F.cross_entropy(tl, tt(targets), ignore_index=ignore_index, label_smoothing=smoothing)
    (0.7 * tloss).backward()
    logp = ops.log_softmax(logits)
    check_all({"loss": loss, "dlogits": dlogits, "log_softmax": logp},
              {"loss": tloss.item(), "dlogits": grad(tl), "log_softmax": F.log_softmax(tt(logits), 1)}, tol)


# ---- recurrent cells and steps --------------------------------------------------------------


def torch_gate_twin(cell, xg, hg, state):
    """The gate math of one step in torch, given both projections (checked against torch's own
    cells below, then used as the reference for minis2s's pointwise ``*_cell_forward``)."""
    H = state[0].shape[1]
    if cell == "lstm":
        i, f, g, o = (xg + hg).split(H, dim=1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        xr, xz, xn = xg.split(H, dim=1)
        hr, hz, hn = hg.split(H, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return ((1 - z) * n + z * state[0],)
    return (torch.tanh(xg + hg),)


@cells
def test_torch_gate_twin_agrees_with_torch_cells(rng, cell):
    B, I, H = 3, 2, 4
    ref = TORCH_CELLS[cell](I, H).double()
    x = tt(rng.standard_normal((B, I)))
    state = tuple(tt(rng.standard_normal((B, H))) for _ in range(N_STATES[cell]))
    xg = x @ ref.weight_ih.T + ref.bias_ih
    hg = state[0] @ ref.weight_hh.T + ref.bias_hh
    twin = torch_gate_twin(cell, xg, hg, state)
    real = ref(x, state if cell == "lstm" else state[0])
    real = real if cell == "lstm" else (real,)
    for k, (a, b) in enumerate(zip(twin, real)):
        check_close(f"state{k}", a.detach(), b.detach(), F64_TOL)


@dtype_names
@cells
def test_cell_pointwise_forward_and_backward_match_torch(rng, dtype, cell):
    nd, _, tol = DTYPES[dtype]
    c = ops.CELLS[OP_CELLS[cell]]
    B, H = 3, 4
    xg, hg = (rng.standard_normal((B, c.gates * H)).astype(nd) for _ in range(2))
    state = tuple(rng.standard_normal((B, H)).astype(nd) for _ in range(c.n_states))
    dnew = tuple(rng.standard_normal((B, H)).astype(nd) for _ in range(c.n_states))
    new, cache = c.forward(xg, hg, state)
    dxg, dhg, ddirect = c.backward(dnew, cache)
    txg, thg = tt(xg, True), tt(hg, True)
    tstate = tuple(tt(s, True) for s in state)
    tnew = torch_gate_twin(cell, txg, thg, tstate)
    sum((n * tt(d)).sum() for n, d in zip(tnew, dnew)).backward()
    ours = {"dxg": dxg, "dhg": dhg} | {f"state{k}": n for k, n in enumerate(new)}
    ref = {"dxg": grad(txg), "dhg": grad(thg)} | {f"state{k}": n.detach() for k, n in enumerate(tnew)}
    for k, (s, d) in enumerate(zip(tstate, ddirect)):
        ours[f"dstate{k} (direct)"] = np.zeros_like(state[k]) if d is None else d
        ref[f"dstate{k} (direct)"] = np.zeros(s.shape) if s.grad is None else grad(s)
    check_all(ours, ref, tol)


@dtype_names
@cells
def test_step_ops_match_torch_cells(rng, dtype, cell):
    """``lstm_step_forward``/``gru_step_forward``/``rnn_step_forward`` and their backward."""
    nd, td, tol = DTYPES[dtype]
    step_forward, step_backward = {
        "lstm": (ops.lstm_step_forward, ops.lstm_step_backward),
        "gru": (ops.gru_step_forward, ops.gru_step_backward),
        "rnn": (ops.rnn_step_forward, ops.rnn_step_backward),
    }[cell]
    B, I, H, n = 3, 2, 4, N_STATES[cell]
    ref = TORCH_CELLS[cell](I, H).to(td)
    w = {k: v.detach().numpy().copy() for k, v in ref.named_parameters()}  # weight_ih, ..., bias_hh
    x = rng.standard_normal((B, I)).astype(nd)
    state = [rng.standard_normal((B, H)).astype(nd) for _ in range(n)]
    dnew = [rng.standard_normal((B, H)).astype(nd) for _ in range(n)]
    *new, cache = step_forward(x, *state, *w.values())
    grads = step_backward(*dnew, cache)  # dx, dstate..., dw_ih, dw_hh, db_ih, db_hh
    names = ["dx"] + [f"dstate{k}" for k in range(n)] + [f"grad {k}" for k in w]
    ours = dict(zip(names, grads)) | {f"state{k}": s for k, s in enumerate(new)}
    tx = tt(x, True)
    tstate = [tt(s, True) for s in state]
    tnew = ref(tx, tuple(tstate)) if cell == "lstm" else (ref(tx, tstate[0]),)
    sum((s * tt(d)).sum() for s, d in zip(tnew, dnew)).backward()
    theirs = {"dx": grad(tx)} | {f"dstate{k}": grad(s) for k, s in enumerate(tstate)}
    theirs |= {f"grad {k}": grad(p) for k, p in ref.named_parameters()}
    theirs |= {f"state{k}": s.detach() for k, s in enumerate(tnew)}
    check_all(ours, theirs, tol)


# ---- whole sequences: ops, modules, padding --------------------------------------------------


def torch_recurrent(cell, state_dict, x, states, lengths, dout, dfinal, dtype):
    """Run torch.nn.{LSTM,GRU,RNN} (weights ``state_dict``; packed when ``lengths`` is given)
    and backpropagate ``Σ dout·out + Σ dfinal·final``. Returns outputs and gradients by name."""
    T, _, I = x.shape
    L, _, H = states[0].shape
    ref = TORCH[cell](I, H, num_layers=L).to(dtype)
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, strict=True)
    tx = tt(x, True)
    tstates = [tt(s, True) for s in states]
    inp = tx if lengths is None else pack_padded_sequence(tx, tt(lengths), enforce_sorted=False)
    out, final = ref(inp, tuple(tstates) if cell == "lstm" else tstates[0])
    if lengths is not None:
        out, _ = pad_packed_sequence(out, total_length=T)
    finals = final if cell == "lstm" else (final,)
    loss = (out * tt(dout)).sum() + sum((f * tt(d)).sum() for f, d in zip(finals, dfinal))
    loss.backward()
    res = {"out": out.detach(), "dx": grad(tx)}
    res |= {f"final{k}": f.detach() for k, f in enumerate(finals)}
    res |= {f"dstate0_{k}": grad(s) for k, s in enumerate(tstates)}
    res |= {f"grad {k}": grad(p) for k, p in ref.named_parameters()}
    return res


def random_lengths(rng, T, B):
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T  # pad_packed_sequence's total_length covers the longest row
    return lengths


@dtype_names
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@cells
def test_sequence_ops_match_torch_single_layer(rng, dtype, cell, padded):
    """``lstm_forward`` / ``recurrent_forward`` against a one-layer torch module (packed)."""
    nd, td, tol = DTYPES[dtype]
    c = ops.CELLS[OP_CELLS[cell]]
    T, B, I, H = 5, 4, 3, 2
    x = rng.standard_normal((T, B, I)).astype(nd)
    states = [rng.standard_normal((1, B, H)).astype(nd) for _ in range(c.n_states)]
    dout = rng.standard_normal((T, B, H)).astype(nd)
    dfinal = [rng.standard_normal((1, B, H)).astype(nd) for _ in range(c.n_states)]
    G = c.gates * H
    w = {"weight_ih_l0": (G, I), "weight_hh_l0": (G, H), "bias_ih_l0": (G,), "bias_hh_l0": (G,)}
    w = {k: rng.uniform(-0.7, 0.7, s).astype(nd) for k, s in w.items()}
    lengths = random_lengths(rng, T, B) if padded else None
    s0 = tuple(s[0] for s in states)
    if cell == "lstm":  # the LSTM's named entry points
        out, finals, cache = ops.lstm_forward(x, *s0, *w.values(), lengths=lengths)
        dx, *ds0_and_dw = ops.lstm_backward(dout, dfinal[0][0], dfinal[1][0], cache)
        ds0, dw = ds0_and_dw[:2], ds0_and_dw[2:]
    else:
        out, finals, cache = ops.recurrent_forward(c, x, s0, *w.values(), lengths=lengths)
        dx, ds0, dw = ops.recurrent_backward(dout, tuple(d[0] for d in dfinal), cache)
    ours = {"out": out, "dx": dx} | {f"final{k}": f[None] for k, f in enumerate(finals)}
    ours |= {f"dstate0_{k}": d[None] for k, d in enumerate(ds0)} | {f"grad {k}": g for k, g in zip(w, dw)}
    check_all(ours, torch_recurrent(cell, w, x, states, lengths, dout, dfinal, td), tol)


# Every hypothesis draw below runs in float64 and in float32 (see check_all).


@st.composite
def rnn_shapes(draw):
    return {
        "L": draw(st.integers(1, 3)), "B": draw(st.integers(1, 4)), "T": draw(st.integers(1, 6)),
        "I": draw(st.integers(1, 6)), "H": draw(st.integers(1, 8)), "padded": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@cells
@HYPOTHESIS
@given(shape=rnn_shapes())
# a draw that once failed a per-tensor float32 check: the GRU's final state, 7.5e-6 from O(1) terms
@example(shape={"L": 1, "B": 1, "T": 6, "I": 1, "H": 1, "padded": False, "seed": 1024})
def test_recurrent_modules_match_torch_with_and_without_padding(cell, shape):
    """LSTM/GRU/RNN modules, 1-3 layers, random initial states; ``lengths`` against packing."""
    for nd, td, tol in DTYPES.values():
        rng = np.random.default_rng(shape["seed"])  # the same draw in both dtypes
        L, B, T, I, H = (shape[k] for k in "LBTIH")
        n = N_STATES[cell]
        mod = OURS[cell](I, H, L, dtype=nd, rng=rng)
        x = rng.standard_normal((T, B, I)).astype(nd)
        states = [rng.standard_normal((L, B, H)).astype(nd) for _ in range(n)]
        dout = rng.standard_normal((T, B, H)).astype(nd)
        dfinal = [rng.standard_normal((L, B, H)).astype(nd) for _ in range(n)]
        lengths = random_lengths(rng, T, B) if shape["padded"] else None
        if cell == "lstm":
            out, finals = mod(x, tuple(states), lengths=lengths)
        else:
            out, h = mod(x, states[0], lengths=lengths)
            finals = (h,)
        dx, ds0 = mod.backward(dout, *dfinal, return_state_grads=True)
        ds0 = ds0 if cell == "lstm" else (ds0,)
        ours = {"out": out, "dx": dx} | {f"final{k}": f for k, f in enumerate(finals)}
        ours |= {f"dstate0_{k}": d for k, d in enumerate(ds0)}
        ours |= {f"grad {k}": p.grad for k, p in mod.named_parameters()}
        check_all(ours, torch_recurrent(cell, mod.state_dict(), x, states, lengths, dout, dfinal, td), tol)


# ---- the skeleton's Encoder, Decoder and Seq2Seq --------------------------------------------


@st.composite
def seq2seq_shapes(draw):
    small_vocab = st.integers(2, 3)
    vocab = st.one_of(small_vocab, st.integers(2, 9))
    return {
        "L": draw(st.integers(1, 3)), "B": draw(st.integers(1, 4)), "S": draw(st.integers(1, 6)),
        "T": draw(st.integers(2, 6)), "H": draw(st.integers(1, 8)), "E": draw(st.integers(1, 6)),
        "src_vocab": draw(vocab), "trg_vocab": draw(vocab),
        "torch_init": draw(st.booleans()),  # whose initial weights: ours -> torch, or torch -> ours
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def make_pair(shape, cell, nd, td):
    """Our Seq2Seq (NumPy dtype ``nd``) and the torch twin (``td``) with the same weights,
    loaded in either direction."""
    args = (shape["H"], shape["E"], shape["L"])
    rng = np.random.default_rng(shape["seed"])  # the example's own weights: a replay draws the same
    ours = Seq2Seq(Encoder(shape["src_vocab"], *args, cell=cell, dtype=nd, rng=rng),
                   Decoder(shape["trg_vocab"], *args, cell=cell, dtype=nd, rng=rng))
    torch.manual_seed(shape["seed"] % 2**31)
    ref = make_seed_model(shape["src_vocab"], shape["trg_vocab"], *args, cell=cell, dtype=td)
    assert list(ours.state_dict()) == list(ref.state_dict()), "state-dict keys must match the torch twin's"
    if shape["torch_init"]:
        ours.load_state_dict(ref.state_dict(), strict=True)
    else:
        load_ours_into_torch(ours, ref)
    return ours, ref


def assume_argmax_is_stable(outputs, flips, margin):
    """Where the next input is an argmax, skip draws whose top two logits nearly tie: float32
    round-off may break such a tie differently in the two libraries and take another path."""
    for t in range(1, len(flips)):  # outputs[t]'s argmax feeds step t+1 when flips[t-1] is False
        if not flips[t - 1]:
            top2 = np.sort(outputs[t], axis=1)[:, -2:]
            assume(np.min(top2[:, 1] - top2[:, 0]) > margin)


def check_seq2seq_pair(shape, cell, ratio, loss_kind):
    """Forward and backward on our model and the torch one, in both dtypes; compares outputs,
    the loss and every parameter gradient."""
    for nd, td, tol in DTYPES.values():
        ours, ref = make_pair(shape, cell, nd, td)
        rng = np.random.default_rng(shape["seed"])
        S, T, B, V = shape["S"], shape["T"], shape["B"], shape["trg_vocab"]
        src = rng.integers(0, shape["src_vocab"], size=(S, B))
        trg = rng.integers(0, V, size=(T, B))
        trg[1, 0] = 1  # at least one target that the cross-entropy does not ignore (padding is 0)
        out = ours(src, trg, ratio, generator=np.random.default_rng(shape["seed"] + 1))
        flips = ours.teacher_forcing_flips
        assert len(flips) == T - 1
        assume_argmax_is_stable(out, flips, tol)  # a tie closer than the tolerance may flip
        tout = ref(tt(src), tt(trg), ratio, flips=flips)
        if loss_kind == "sum":  # loss = Σ outputs ⊙ R
            r = rng.standard_normal(out.shape).astype(nd)
            ours.backward(r)
            (tout * tt(r)).sum().backward()
            losses = {}, {}
        else:  # our cross-entropy with padding (id 0) against torch's
            ce = CrossEntropyLoss(ignore_index=0)
            loss = ce(out[1:].reshape(-1, V), trg[1:].reshape(-1))
            dout = np.zeros_like(out)
            dout[1:] = ce.backward(1.0).reshape(T - 1, B, V)
            ours.backward(dout)
            tloss = F.cross_entropy(tout[1:].reshape(-1, V), tt(trg[1:].reshape(-1)), ignore_index=0)
            tloss.backward()
            losses = {"loss": loss}, {"loss": tloss.item()}
        mine, theirs = param_grads(ours, ref)
        check_all(mine | {"outputs": out} | losses[0], theirs | {"outputs": tout.detach()} | losses[1], tol)


@pytest.mark.parametrize("loss_kind", ["sum", "cross_entropy"])
@pytest.mark.parametrize("ratio", [0.0, 1.0, 0.5])
@HYPOTHESIS
@given(shape=seq2seq_shapes())
def test_seq2seq_matches_the_completed_seed_model(ratio, loss_kind, shape):
    """Outputs and every parameter gradient of our Seq2Seq vs the PyTorch twin."""
    check_seq2seq_pair(shape, "lstm", ratio, loss_kind)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
@HYPOTHESIS
@given(shape=seq2seq_shapes(), ratio=st.sampled_from([0.0, 0.5, 1.0]))
def test_gru_and_rnn_seq2seq_match_a_torch_twin(cell, shape, ratio):
    check_seq2seq_pair(shape, cell, ratio, "sum")


@cells
@HYPOTHESIS
@given(shape=seq2seq_shapes(), padded=st.booleans())
def test_encoder_final_state_and_gradients_match_torch(cell, shape, padded):
    """The skeleton's Encoder; with ``src_lengths`` the torch side packs the embedded source."""
    for nd, td, tol in DTYPES.values():
        ours, ref = make_pair(shape, cell, nd, td)
        enc, tenc = ours.encoder, ref.encoder
        rng = np.random.default_rng(shape["seed"])
        S, B = shape["S"], shape["B"]
        src = rng.integers(0, shape["src_vocab"], size=(S, B))
        lengths = random_lengths(rng, S, B) if padded else None
        n = N_STATES[cell]
        dfinal = [rng.standard_normal((shape["L"], B, shape["H"])).astype(nd) for _ in range(n)]
        finals = enc(src, lengths)[:n]
        enc.backward(*dfinal)
        if lengths is None:
            tfinals = tenc(tt(src))[:n]
        else:  # the skeleton's Encoder.forward with the embedded source packed
            packed = pack_padded_sequence(tenc.embedding(tt(src)), tt(lengths), enforce_sorted=False)
            _, tfinal = tenc.rnn(packed)
            tfinals = tfinal if cell == "lstm" else (tfinal,)
        sum((f * tt(d)).sum() for f, d in zip(tfinals, dfinal)).backward()
        mine, theirs = param_grads(enc, tenc)
        mine |= {f"final{k}": f for k, f in enumerate(finals)}
        theirs |= {f"final{k}": f.detach() for k, f in enumerate(tfinals)}
        check_all(mine, theirs, tol)


@cells
@HYPOTHESIS
@given(shape=seq2seq_shapes())
def test_decoder_step_and_gradients_of_incoming_state_match_torch(cell, shape):
    for nd, td, tol in DTYPES.values():
        ours, ref = make_pair(shape, cell, nd, td)
        dec, tdec = ours.decoder, ref.decoder
        rng = np.random.default_rng(shape["seed"])
        L, B, H, V, n = shape["L"], shape["B"], shape["H"], shape["trg_vocab"], N_STATES[cell]
        ids = rng.integers(0, V, size=B)
        state = [rng.standard_normal((L, B, H)).astype(nd) for _ in range(n)]
        dpred = rng.standard_normal((B, V)).astype(nd)
        dstate = [rng.standard_normal((L, B, H)).astype(nd) for _ in range(n)]
        pred, *new = dec(ids, *state, *([None] * (2 - n)))
        dstate0 = dec.backward(dpred, *dstate)
        tstate = [tt(s, True) for s in state]
        tpred, *tnew = tdec(tt(ids), *tstate, *([None] * (2 - n)))
        ((tpred * tt(dpred)).sum() + sum((s * tt(d)).sum() for s, d in zip(tnew, dstate))).backward()
        mine, theirs = param_grads(dec, tdec)
        mine |= {"prediction": pred} | {f"state{k}": new[k] for k in range(n)}
        mine |= {f"dstate0_{k}": dstate0[k] for k in range(n)}
        theirs |= {"prediction": tpred.detach()} | {f"state{k}": tnew[k].detach() for k in range(n)}
        theirs |= {f"dstate0_{k}": grad(tstate[k]) for k in range(n)}
        check_all(mine, theirs, tol)


# ---- attention: the ops, bidirectional modules, AttentionSeq2Seq and its twin -----------------


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
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
    check_all(ours, theirs, F64_TOL)


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


@cells
@HYPOTHESIS
@given(L=st.integers(1, 2), B=st.integers(1, 3), T=st.integers(1, 5), I=st.integers(1, 4),
       H=st.integers(1, 4), padded=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_bidirectional_modules_match_torch_on_packed_sequences(cell, L, B, T, I, H, padded, seed):
    """out (T, B, 2H), h_n/c_n (2L, B, H), dx, dh0/dc0 and every parameter, fast path and
    reference, float64 within F64_TOL."""
    rng = np.random.default_rng(seed)
    n = 2 if cell == "lstm" else 1
    mod = OURS[cell](I, H, L, bidirectional=True, dtype=np.float64, rng=rng)
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
        check_all(ours | {f"grad {k}": p.grad for k, p in mod.named_parameters()}, ref, F64_TOL)


@st.composite
def attention_shapes(draw):
    B = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(ATTENTION_KINDS))
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
    ours = make_attention_seq2seq(sh["kind"], sh["input_feeding"], src_vocab=sh["src_vocab"],
                                  trg_vocab=sh["trg_vocab"], He=sh["He"], H=sh["H"], E=sh["E"], L=sh["L"],
                                  seed=sh["seed"])
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
    check_all(mine, theirs, F64_TOL)
