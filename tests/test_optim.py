"""SGD, Adam and clip_grad_norm_ step for step against torch.optim / torch.nn.utils in float64.

The model is a real one: a 2-layer minis2s LSTM + Linear and its torch twin with the same
weights. Every step draws a fresh input and upstream gradient, runs forward and backward in both,
and (on some steps) drops the gradient of a few parameters to None, which both optimisers must
skip — for Adam that also means those parameters' step counts fall behind the others'.
"""
import copy

import numpy as np
import pytest
import torch
from conftest import F64_TOL, check_close

from minis2s import nn, optim

T, B, I, H, V = 4, 3, 5, 6, 7
STEPS = 20
# Parameters whose gradient is set to None on odd steps (checks that .grad None is skipped).
SOMETIMES_NONE = ("lstm.bias_hh_l1", "fc.bias", "lstm.weight_ih_l0")


class Model(nn.Module):
    """LSTM (2 layers) -> Linear, the smallest thing with the parameter mix of a seq2seq."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(7)
        self.lstm = nn.LSTM(I, H, num_layers=2, dtype=np.float64, rng=rng)
        self.fc = nn.Linear(H, V, dtype=np.float64, rng=rng)


class TorchModel(torch.nn.Module):
    def __init__(self, ours):
        super().__init__()
        self.lstm = torch.nn.LSTM(I, H, num_layers=2, dtype=torch.float64)
        self.fc = torch.nn.Linear(H, V, dtype=torch.float64)
        self.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})


def step_data(k):
    """The input and upstream gradient of step k (the same in every run)."""
    rng = np.random.default_rng(1000 + k)
    return rng.standard_normal((T, B, I)), rng.standard_normal((T, B, V))


def ours_backward(model, k):
    """Fresh gradients from a real forward/backward of L = Σ y ⊙ dy; some set to None."""
    x, dy = step_data(k)
    model.zero_grad()
    out, _ = model.lstm(x)
    model.fc(out)
    model.lstm.backward(model.fc.backward(dy))
    if k % 2:
        params = dict(model.named_parameters())
        for name in SOMETIMES_NONE:
            params[name].grad = None


def torch_backward(model, k):
    x, dy = step_data(k)
    model.zero_grad(set_to_none=True)
    out, _ = model.lstm(torch.from_numpy(x))
    (model.fc(out) * torch.from_numpy(dy)).sum().backward()
    if k % 2:
        params = dict(model.named_parameters())
        for name in SOMETIMES_NONE:
            params[name].grad = None


def check_params(label, ours, theirs, tol=F64_TOL):
    ref = dict(theirs.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(ref), f"{label}: parameter names differ"
    for name, p in ours.named_parameters():
        check_close(f"{label}: {name}", p.data, ref[name].detach().numpy(), tol)


OPTIMISERS = {
    "sgd": (lambda p: optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_momentum": (
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    ),
    "sgd_momentum_weight_decay": (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=0.01),
    ),
    "sgd_weight_decay_no_momentum": (
        lambda p: optim.SGD(p, lr=0.05, weight_decay=0.1),
        lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.1),
    ),
    "sgd_nesterov": (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    ),
    "adam": (lambda p: optim.Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    "adam_weight_decay": (
        lambda p: optim.Adam(p, lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
        lambda p: torch.optim.Adam(p, lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_optimiser_matches_torch_float64_over_20_steps(name):
    make_ours, make_torch = OPTIMISERS[name]
    ours = Model()
    theirs = TorchModel(ours)
    opt, topt = make_ours(ours.parameters()), make_torch(theirs.parameters())
    for k in range(STEPS):
        ours_backward(ours, k)
        torch_backward(theirs, k)
        opt.step()
        topt.step()
        check_params(f"{name} step {k}", ours, theirs)
    # The parameters really moved (a no-op step would also "match").
    assert not np.allclose(ours.fc.weight.data, Model().fc.weight.data)


def test_skipped_parameter_is_left_untouched():
    """A parameter whose grad is None is not updated at all, even with momentum/weight decay."""
    for make in (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
                 lambda p: optim.Adam(p, lr=0.1, weight_decay=0.1)):
        model = Model()
        opt = make(model.parameters())
        ours_backward(model, 0)
        opt.step()
        before = model.fc.bias.data.copy()
        ours_backward(model, 1)  # odd step: fc.bias.grad is None
        assert model.fc.bias.grad is None
        opt.step()
        np.testing.assert_array_equal(model.fc.bias.data, before)


@pytest.mark.parametrize("max_norm,norm_type", [(0.5, 2.0), (3.0, 2.0), (1.0, 1.0), (0.2, float("inf"))])
def test_clip_grad_norm_matches_torch_float64(max_norm, norm_type):
    """Clip, then SGD with momentum, 20 steps; the returned total norm equals torch's too."""
    ours = Model()
    theirs = TorchModel(ours)
    opt = optim.SGD(ours.parameters(), lr=0.1, momentum=0.5)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.5)
    clipped = 0
    for k in range(STEPS):
        ours_backward(ours, k)
        torch_backward(theirs, k)
        total = optim.clip_grad_norm_(ours.parameters(), max_norm, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm, norm_type)
        check_close(f"total norm step {k}", total, ttotal.item(), F64_TOL)
        clipped += total > max_norm
        tgrads = dict(theirs.named_parameters())
        for pname, p in ours.named_parameters():
            assert (p.grad is None) == (tgrads[pname].grad is None), pname
            if p.grad is not None:
                check_close(f"clipped grad {pname} step {k}", p.grad, tgrads[pname].grad.numpy(), F64_TOL)
        opt.step()
        topt.step()
        check_params(f"clip step {k}", ours, theirs)
    assert clipped > 0, "max_norm never clipped: the test proves nothing"


def test_clip_grad_norm_leaves_small_gradients_unchanged():
    model = Model()
    ours_backward(model, 0)
    before = [p.grad.copy() for p in model.parameters()]
    total = optim.clip_grad_norm_(model.parameters(), 1e6)
    assert total > 0
    for b, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(p.grad, b)


def test_clip_grad_norm_with_no_gradients_returns_zero():
    model = Model()
    assert optim.clip_grad_norm_(model.parameters(), 1.0) == 0.0


# ---- optimiser state dicts ----------------------------------------------------------------------


def run(model, opt, steps):
    for k in steps:
        ours_backward(model, k)
        opt.step()


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_optimiser_state_dict_round_trip_is_bit_identical(name):
    """Save after 10 steps, load model and optimiser into fresh objects, continue 10 steps:
    exactly the parameters of an uninterrupted 20-step run."""
    make = OPTIMISERS[name][0]
    straight = Model()
    run(straight, make(straight.parameters()), range(STEPS))

    first = Model()
    opt = make(first.parameters())
    run(first, opt, range(STEPS // 2))
    model_sd, opt_sd = first.state_dict(), copy.deepcopy(opt.state_dict())

    resumed = Model()
    for p in resumed.parameters():  # make sure the load, not the init, provides the weights
        p.data += 1.0
    resumed.load_state_dict(model_sd)
    opt2 = make(resumed.parameters())
    opt2.load_state_dict(opt_sd)
    run(resumed, opt2, range(STEPS // 2, STEPS))

    for (pname, a), b in zip(straight.named_parameters(), resumed.parameters()):
        np.testing.assert_array_equal(b.data, a.data, err_msg=f"{name}: {pname} after resume")


@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_optimiser_state_dict_is_a_snapshot(name):
    """The saved state is a copy: stepping on afterwards does not change it, and an optimiser
    loaded from it does not share buffers with the one it came from."""
    make = OPTIMISERS[name][0]
    model = Model()
    opt = make(model.parameters())
    run(model, opt, range(3))
    sd = opt.state_dict()
    saved = copy.deepcopy(sd)
    run(model, opt, range(3, 6))
    for s, t in zip(sd["state"], saved["state"]):
        assert s.keys() == t.keys()
        for key in s:
            np.testing.assert_array_equal(s[key], t[key], err_msg=f"state_dict()['state'][..][{key!r}] changed")

    other = Model()
    opt2 = make(other.parameters())
    opt2.load_state_dict(sd)
    run(other, opt2, range(6, 8))
    for s, t in zip(sd["state"], saved["state"]):
        for key in s:
            np.testing.assert_array_equal(s[key], t[key], err_msg=f"load_state_dict aliased {key!r}")


def test_optimiser_state_dict_contents():
    model = Model()
    opt = optim.Adam(model.parameters(), lr=0.01)
    run(model, opt, range(3))
    sd = opt.state_dict()
    assert sd["lr"] == 0.01
    assert len(sd["state"]) == len(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    for pname, st in zip(names, sd["state"]):
        # steps 0 and 2 update every parameter; step 1 skips SOMETIMES_NONE
        assert st["step"] == (2 if pname in SOMETIMES_NONE else 3), pname
        assert isinstance(st["exp_avg"], np.ndarray)


# ---- the fused update (kernels/optim_cpu.py) against optim.py's NumPy code ---------------------
def _adam_run(dtype, fast, weight_decay, steps=6):
    """Six Adam steps on three parameters (shapes as an LSTM layer's) with random gradients;
    ``fast``: the fused kernel (dispatch on) or optim.py's NumPy code (dispatch off)."""
    from minis2s import dispatch
    from minis2s.nn.module import Parameter

    rng = np.random.default_rng(3)
    params = [Parameter(rng.standard_normal(shape).astype(dtype)) for shape in ((32, 5), (32, 8), (32,))]
    opt = optim.Adam(params, lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay)
    for k in range(steps):
        for p in params:
            p.grad = (rng.standard_normal(p.shape) * 10.0 ** rng.integers(-3, 2)).astype(dtype)
        dispatch.set_enabled(fast)
        try:
            opt.step()
        finally:
            dispatch.set_enabled(None)
    return [p.data for p in params] + [st[key] for st in opt.state if st for key in ("exp_avg", "exp_avg_sq")]


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_adam_is_the_numpy_update_bit_for_bit(dtype, weight_decay):
    # Tolerance 0: every scalar reaches the kernel in the arrays' dtype and fastmath is off, so
    # each element sees the reference's operations in its order (IEEE +, ×, ÷, √ round alike).
    from minis2s import dispatch

    if not dispatch.available():
        pytest.skip("no Numba: the fused kernels are not built")
    fused, ref = _adam_run(dtype, True, weight_decay), _adam_run(dtype, False, weight_decay)
    start = _adam_run(dtype, False, weight_decay, steps=0)
    assert len(fused) == len(ref) == 9
    for a, r in zip(fused, ref):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, r)
    assert not any(np.array_equal(r, s) for r, s in zip(ref, start)), "the parameters did not move"


def test_fused_adam_is_not_given_what_it_cannot_take():
    # A strided gradient or mixed dtypes go to the NumPy code, which handles them.
    from minis2s import dispatch

    if not dispatch.available():
        pytest.skip("no Numba: the fused kernels are not built")
    a = np.ones((4, 6), dtype=np.float32)
    assert dispatch.optimizer_kernels(a, a) is not None
    assert dispatch.optimizer_kernels(a, np.ones((6, 4), dtype=np.float32).T) is None
    assert dispatch.optimizer_kernels(a, a.astype(np.float64)) is None
    assert dispatch.optimizer_kernels(a.astype(np.int64)) is None
    with dispatch.disabled():
        assert dispatch.optimizer_kernels(a, a) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_gradient_norm_matches_numpy(dtype):
    # float64 accumulation against NumPy's pairwise sum in the gradients' dtype: they differ by
    # the latter's rounding, ≤ 1e-6 relative in float32 (n ≈ 4e5 terms: pairwise error grows as
    # log2(n)·ε ≈ 1e-6 at worst) and ≤ 1e-12 in float64; the clipped gradients follow.
    from minis2s import dispatch
    from minis2s.nn.module import Parameter

    if not dispatch.available():
        pytest.skip("no Numba: the fused kernels are not built")
    totals, clipped = {}, {}
    for fast in (True, False):
        params = [Parameter(np.zeros(shape, dtype=dtype)) for shape in ((512, 384), (512, 384), (512,))]
        for p, r in zip(params, np.random.default_rng(5).spawn(3)):
            p.grad = r.standard_normal(p.shape).astype(dtype)
        dispatch.set_enabled(fast)
        try:
            totals[fast] = optim.clip_grad_norm_(params, 1.0)
        finally:
            dispatch.set_enabled(None)
        clipped[fast] = [p.grad for p in params]
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert totals[True] > 100.0, "the gradients were not the random ones"
    assert abs(totals[True] - totals[False]) <= tol * totals[False], (totals, dtype)
    for a, r in zip(clipped[True], clipped[False]):
        check_close("clipped gradient", a, r, 2 * tol)
