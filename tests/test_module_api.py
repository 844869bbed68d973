"""The Module API behaves like torch.nn's: the same parameter names, order and shapes (so weights
move both ways), zero_grad, train()/eval() through every child, gradients that accumulate,
state dicts that are copies, loading torch tensors directly, and no caches under no_grad().
"""
import os

import numpy as np
import pytest
import torch
from conftest import F32_TOL, F64_TOL, SEED_SKELETON, check_close, load_seed_skeleton

import minis2s
from minis2s import Decoder, Encoder, Seq2Seq, no_grad, optim
from minis2s.nn import GRU, LSTM, RNN, Dropout, Embedding, Linear, Module, Parameter, is_grad_enabled

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
S, T, B, L, H, E = 5, 4, 3, 2, 6, 5
SRC_V, TRG_V = 11, 9


@pytest.fixture(scope="module")
def seed():
    """The user's PyTorch skeleton, tests/data/seed_skeleton.py, imported as it is."""
    return load_seed_skeleton()


def test_the_vendored_skeleton_is_the_users_file_byte_for_byte():
    """tests/data/seed_skeleton.py is shared/seed_skeleton.py (beside the repository) unchanged;
    only a clone without that folder beside it cannot compare."""
    if not os.path.isdir(SHARED):
        pytest.skip("no shared/ folder beside the repository to compare tests/data/seed_skeleton.py with")
    with open(os.path.join(SHARED, "seed_skeleton.py"), "rb") as f, open(SEED_SKELETON, "rb") as g:
        assert f.read() == g.read(), "tests/data/seed_skeleton.py differs from shared/seed_skeleton.py"


def names_and_shapes(module):
    """[(name, shape)] in registration order, for either library."""
    return [(n, tuple(p.shape)) for n, p in module.named_parameters()]


def ours_model(cell="lstm", dtype=np.float32, dropout=0.0):
    enc = Encoder(SRC_V, H, E, L, cell=cell, dtype=dtype, dropout=dropout)
    dec = Decoder(TRG_V, H, E, L, cell=cell, dtype=dtype, dropout=dropout)
    return Seq2Seq(enc, dec, "cpu")


def seed_model(seed, cell="lstm"):
    enc = seed.Encoder(SRC_V, H, E, L)
    dec = seed.Decoder(TRG_V, H, E, L)
    if cell != "lstm":  # the skeleton only has LSTMs; minis2s's cell= swaps the same attribute
        rnn = {"gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        enc.rnn = rnn(E, H, num_layers=L)
        dec.rnn = rnn(E, H, num_layers=L)
    return seed.Seq2Seq(enc, dec, "cpu")


def batch(rng=None):
    rng = rng or np.random.default_rng(0)
    return rng.integers(0, SRC_V, (S, B)), rng.integers(0, TRG_V, (T, B))


# ---- names, order and shapes are torch's ---------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("ours,theirs", [(LSTM, torch.nn.LSTM), (GRU, torch.nn.GRU), (RNN, torch.nn.RNN)],
                         ids=["LSTM", "GRU", "RNN"])
def test_recurrent_parameter_names_order_and_shapes_match_torch(ours, theirs, num_layers):
    m, t = ours(4, 7, num_layers=num_layers), theirs(4, 7, num_layers=num_layers)
    assert names_and_shapes(m) == names_and_shapes(t)
    assert list(m.state_dict()) == list(t.state_dict())


@pytest.mark.parametrize("bias", [True, False])
def test_linear_parameter_names_and_shapes_match_torch(bias):
    m, t = Linear(4, 3, bias=bias), torch.nn.Linear(4, 3, bias=bias)
    assert names_and_shapes(m) == names_and_shapes(t)


def test_embedding_parameter_names_and_shapes_match_torch():
    assert names_and_shapes(Embedding(10, 3)) == names_and_shapes(torch.nn.Embedding(10, 3))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_seq2seq_state_dict_keys_and_shapes_are_the_seed_models(seed, cell):
    ours, theirs = ours_model(cell), seed_model(seed, cell)
    assert names_and_shapes(ours) == names_and_shapes(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [tuple(v.shape) for v in ours.state_dict().values()] == [
        tuple(v.shape) for v in theirs.state_dict().values()
    ]
    assert names_and_shapes(ours.encoder) == names_and_shapes(theirs.encoder)
    assert names_and_shapes(ours.decoder) == names_and_shapes(theirs.decoder)


def test_parameters_are_named_parameters_values_in_order():
    model = ours_model()
    params = model.parameters()
    named = list(model.named_parameters())
    assert isinstance(params, list) and all(isinstance(p, Parameter) for p in params)
    assert len(params) == len(named) == len({n for n, _ in named})
    assert all(p is q for p, (_, q) in zip(params, named))
    # The same objects the attributes hold: an optimiser updates what forward reads.
    assert params[0] is model.encoder.embedding.weight
    assert params[-1] is model.decoder.fc_out.bias


def test_only_parameters_and_modules_are_registered():
    class Net(Module):
        def __init__(self):
            super().__init__()
            self.b = Parameter(np.zeros(2))
            self.child = Linear(2, 2)
            self.a = Parameter(np.ones(3))
            self.not_a_param = np.zeros(4)  # a plain array is a buffer of the user's, not a parameter
            self.none = None

    assert [n for n, _ in Net().named_parameters()] == ["b", "a", "child.weight", "child.bias"]
    assert [n for n, _ in torch_net_names()] == ["b", "a", "child.weight", "child.bias"]


def torch_net_names():
    """The same Net in torch: own parameters first, then children's (torch's order too)."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.zeros(2))
            self.child = torch.nn.Linear(2, 2)
            self.a = torch.nn.Parameter(torch.ones(3))

    return Net().named_parameters()


def test_module_needs_init_before_attributes():
    class Bad(Module):
        def __init__(self):
            self.w = Parameter(np.zeros(1))

    with pytest.raises(AttributeError, match=r"call Module.__init__\(\) before assigning attributes"):
        Bad()


# ---- weights move both ways: load torch tensors directly -----------------------------------------


def test_load_state_dict_from_torch_tensors_directly(seed):
    torch.manual_seed(0)
    theirs = seed_model(seed)
    ours = ours_model()
    ours.load_state_dict(theirs.state_dict())  # torch tensors, no conversion by the caller
    for k, v in theirs.state_dict().items():
        got = ours.state_dict()[k]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, v.numpy(), err_msg=k)


def test_load_state_dict_from_torch_parameters_that_require_grad(seed):
    theirs = seed_model(seed)
    ours = ours_model()
    ours.load_state_dict(dict(theirs.named_parameters()))
    for k, p in theirs.named_parameters():
        np.testing.assert_array_equal(ours.state_dict()[k], p.detach().numpy(), err_msg=k)


def test_weights_loaded_from_the_seed_model_give_its_outputs(seed):
    """Same names and layouts means the same function: encoder state and one decoder step."""
    torch.manual_seed(1)
    theirs = seed_model(seed).eval()
    ours = ours_model().load_state_dict(theirs.state_dict())
    src, trg = batch()
    with torch.no_grad():
        th, tc = theirs.encoder(torch.from_numpy(src))
        tpred, th2, tc2 = theirs.decoder(torch.from_numpy(trg[0]), th, tc)
    with no_grad():
        h, c = ours.encoder(src)
        pred, h2, c2 = ours.decoder(trg[0], h, c)
    for name, a, b in [("hidden", h, th), ("cell", c, tc), ("prediction", pred, tpred),
                       ("hidden after step", h2, th2), ("cell after step", c2, tc2)]:
        check_close(name, a, b.numpy(), F32_TOL)


def test_our_state_dict_loads_into_the_seed_model(seed):
    ours = ours_model()
    theirs = seed_model(seed)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ours.state_dict()[k], err_msg=k)


def test_load_state_dict_casts_to_the_modules_dtype_and_returns_self():
    ours = ours_model(dtype=np.float32)
    sd64 = {k: v.astype(np.float64) + 0.5 for k, v in ours.state_dict().items()}
    assert ours.load_state_dict(sd64) is ours
    for k, v in ours.state_dict().items():
        assert v.dtype == np.float32, k
        np.testing.assert_array_equal(v, sd64[k].astype(np.float32), err_msg=k)


# ---- state dicts are copies ----------------------------------------------------------------------


def test_state_dict_returns_copies():
    model = ours_model()
    sd = model.state_dict()
    assert list(sd) == [n for n, _ in model.named_parameters()]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    saved = {k: v.copy() for k, v in sd.items()}
    for v in sd.values():  # writing into the returned arrays does not reach the model
        v[...] = 123.0
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)
    sd = model.state_dict()
    for p in model.parameters():  # an optimiser's in-place update does not reach a saved dict
        p.data += 1.0
    for k, v in sd.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)


def test_load_state_dict_copies_its_input():
    model = ours_model()
    sd = {k: v + 1.0 for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    expected = {k: v.copy() for k, v in sd.items()}
    for v in sd.values():
        v[...] = -7.0
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, expected[k], err_msg=k)


# ---- zero_grad, train/eval, accumulation ---------------------------------------------------------


def run_seq2seq(model, src, trg, dout):
    model(src, trg, teacher_forcing_ratio=1.0, generator=np.random.default_rng(0))
    model.backward(dout)


def test_zero_grad_clears_every_gradient_recursively():
    model = ours_model(dtype=np.float64)
    src, trg = batch()
    run_seq2seq(model, src, trg, np.ones((T, B, TRG_V)))
    assert all(p.grad is not None for p in model.parameters())
    model.decoder.zero_grad()
    assert all(p.grad is None for p in model.decoder.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    model.zero_grad()
    assert all(p.grad is None for _, p in model.named_parameters())


def test_optimiser_zero_grad_clears_its_parameters():
    model = ours_model(dtype=np.float64)
    run_seq2seq(model, *batch(), np.ones((T, B, TRG_V)))
    opt = optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_train_and_eval_reach_every_submodule():
    model = ours_model(dropout=0.3)
    mods = list(model.modules())
    assert len(mods) == 1 + 2 + 2 * 3 + 1  # Seq2Seq, Encoder/Decoder, their children, fc_out
    assert all(m.training for m in mods)
    assert model.eval() is model
    assert not any(m.training for m in mods)
    assert model.train() is model
    assert all(m.training for m in mods)
    model.train(False)
    assert not any(m.training for m in mods)
    model.encoder.train()  # a subtree only
    assert all(m.training for m in model.encoder.modules())
    assert not any(m.training for m in model.decoder.modules()) and not model.training


def test_eval_turns_dropout_off_and_train_turns_it_back_on():
    minis2s.manual_seed(0)
    model = ours_model(dtype=np.float64, dropout=0.5)
    src, trg = batch()

    def out():
        with no_grad():
            return model(src, trg, teacher_forcing_ratio=1.0, generator=np.random.default_rng(0))

    model.eval()
    np.testing.assert_array_equal(out(), out())
    model.train()
    assert not np.array_equal(out(), out())
    x = np.ones((4, 5))
    drop = Dropout(0.5).eval()
    assert np.array_equal(drop(x), x)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_accumulate_across_backward_calls(cell):
    """Two forward/backward passes without zero_grad give exactly twice one pass (+=, as torch)."""
    model = ours_model(cell=cell, dtype=np.float64)
    src, trg = batch()
    dout = np.random.default_rng(1).standard_normal((T, B, TRG_V))
    run_seq2seq(model, src, trg, dout)
    once = {n: p.grad.copy() for n, p in model.named_parameters()}
    run_seq2seq(model, src, trg, dout)
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, 2 * once[n], err_msg=n)


def test_gradients_accumulate_like_torch_for_layers():
    """Linear and LSTM called twice, then backward twice: torch's accumulated .grad."""
    rng = np.random.default_rng(2)
    lin, lstm = Linear(4, 2, dtype=np.float64, rng=rng), LSTM(3, 4, dtype=np.float64, rng=rng)
    tlin, tlstm = torch.nn.Linear(4, 2).double(), torch.nn.LSTM(3, 4).double()
    tlin.load_state_dict({k: torch.from_numpy(v) for k, v in lin.state_dict().items()})
    tlstm.load_state_dict({k: torch.from_numpy(v) for k, v in lstm.state_dict().items()})
    xs = [rng.standard_normal((5, 2, 3)) for _ in range(2)]
    for x in xs:
        out, _ = lstm(x)
        lin(out)
    for x in reversed(xs):  # the tape is a stack: the last call is backpropagated first
        lstm.backward(lin.backward(np.ones((5, 2, 2)) * x.sum()))
    for x in xs:
        (tlin(tlstm(torch.from_numpy(x))[0]) * float(x.sum())).sum().backward()
    for ours, theirs in ((lin, tlin), (lstm, tlstm)):
        tgrads = dict(theirs.named_parameters())
        for n, p in ours.named_parameters():
            check_close(n, p.grad, tgrads[n].grad.numpy(), F64_TOL)


def test_to_casts_parameters_and_gradients():
    model = ours_model(dtype=np.float32)
    run_seq2seq(model, *batch(), np.ones((T, B, TRG_V), dtype=np.float32))
    assert model.dtype == np.float32
    before = model.state_dict()
    assert model.to(dtype=np.float64) is model
    assert model.dtype == np.float64
    for n, p in model.named_parameters():
        assert p.data.dtype == np.float64 and p.grad.dtype == np.float64, n
        np.testing.assert_array_equal(p.data, before[n].astype(np.float64), err_msg=n)
    model.to(device="cpu", dtype="float32")
    assert all(p.data.dtype == np.float32 for p in model.parameters())


# ---- no_grad -------------------------------------------------------------------------------------


def tapes(model):
    return {type(m).__name__ + f"#{i}": len(m._tape) for i, m in enumerate(model.modules())}


def test_no_grad_keeps_no_caches():
    model = ours_model(dtype=np.float64)
    src, trg = batch()
    with no_grad():
        assert not is_grad_enabled()
        model(src, trg, teacher_forcing_ratio=0.5, generator=np.random.default_rng(0))
        model.encoder(src)
        model.decoder(trg[0], np.zeros((L, B, H)), np.zeros((L, B, H)))
    assert is_grad_enabled()
    assert not any(tapes(model).values()), tapes(model)
    # and outside no_grad the same forward does keep them (the check above is not vacuous)
    model(src, trg, teacher_forcing_ratio=0.5, generator=np.random.default_rng(0))
    assert any(tapes(model).values())


def test_no_grad_layers_keep_no_caches_and_cannot_backward():
    lstm, lin = LSTM(3, 4, dtype=np.float64), Linear(4, 2, dtype=np.float64)
    with no_grad():
        out, _ = lstm(np.ones((2, 1, 3)))
        lin(out)
    assert not lstm._tape and not lin._tape
    with pytest.raises(RuntimeError, match=r"or the forward ran inside no_grad\(\)"):
        lin.backward(np.ones((2, 1, 2)))


def test_no_grad_restores_the_previous_mode_on_exit_and_on_error():
    with no_grad():
        with no_grad():
            assert not is_grad_enabled()
        assert not is_grad_enabled()  # nested: still off until the outer block ends
    assert is_grad_enabled()
    with pytest.raises(ValueError), no_grad():
        Embedding(3, 2)(np.array([5]))
    assert is_grad_enabled()


def test_device_is_read_from_the_parameters_and_cannot_be_set_stale():
    """Module.device says where the parameters are ("cpu" for NumPy arrays), for the model and
    every submodule; it is not an attribute a ``to()`` could leave behind (tests/test_gpu.py
    moves a model to "cuda" and back)."""
    import pytest

    from minis2s import Decoder, Encoder, Seq2Seq

    model = Seq2Seq(Encoder(5, 4, 3, 1), Decoder(6, 4, 3, 1), "cpu")
    assert model.device == model.encoder.device == model.decoder.rnn.device == "cpu"
    with pytest.raises(AttributeError):
        model.device = "cuda"
