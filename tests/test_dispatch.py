"""minis2s/dispatch.py picks the implementation it says it picks, and whichever it picks, a
module gives the reference's numbers.

Module level: nn.LSTM/nn.GRU (several layers, padding, dropout) and Seq2Seq (the decoder's T=1
step loop and its whole-sequence mode) with the fused CPU kernels against the same module on the
reference, within minis2s.tolerances.KERNEL (float64 1e-12, float32 1e-5). The switch: the
default, ``MINIS2S_FASTPATH=0``, ``set_enabled``/``disabled``, a cache consumed by the steps that
made it, CuPy arrays (a stand-in type), and a machine without Numba (a subprocess).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import check_close

from minis2s import Decoder, Encoder, Seq2Seq, dispatch, ops
from minis2s.nn import GRU, LSTM, RNN
from minis2s.ops.recurrent import Steps
from minis2s.tolerances import KERNEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = [np.float64, np.float32]


@pytest.fixture(scope="module")
def kernels():
    pytest.importorskip("numba", reason="the fused CPU kernels need Numba (pip install numba)")
    from minis2s.kernels import gru_cpu, lstm_cpu

    return {"lstm": lstm_cpu, "gru": gru_cpu}


@pytest.fixture(autouse=True)
def switch_follows_environment(monkeypatch):
    """Every test starts with the switch on (as a user with Numba gets it) and leaves it so."""
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    dispatch.set_enabled(None)
    yield
    dispatch.set_enabled(None)


# ---- modules: the kernels against the reference, same module, same numbers ---------------------------

def run_module(m, x, state, lengths, dout, dstate, fast):
    """Forward + backward on one path -> every output, input/state gradient and parameter gradient."""
    dispatch.set_enabled(fast)
    m.zero_grad()
    if m.dropout:
        m.rng = np.random.default_rng(5)  # the same dropout masks on both paths
    if isinstance(m, LSTM):
        out, (h, c) = m(x, state, lengths=lengths)
        dx, (dh0, dc0) = m.backward(dout, *dstate, return_state_grads=True)
        result = {"out": out, "h_n": h, "c_n": c, "dx": dx, "dh0": dh0, "dc0": dc0}
    else:
        out, h = m(x, state[0], lengths=lengths)
        dx, dh0 = m.backward(dout, dstate[0], return_state_grads=True)
        result = {"out": out, "h_n": h, "dx": dx, "dh0": dh0}
    return {**result, **{name: p.grad for name, p in m.named_parameters()}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", [LSTM, GRU])
@pytest.mark.parametrize("layers,lengths,dropout", [(1, None, 0.0), (3, None, 0.0), (2, [5, 1, 3], 0.0),
                                                    (3, [2, 5, 4], 0.3)])
def test_module_on_the_kernels_matches_the_reference(kernels, module, dtype, layers, lengths, dropout):
    rng = np.random.default_rng(6)
    T, B, I, H = 5, 3, 4, 13
    m = module(I, H, layers, dropout=dropout, dtype=dtype, rng=np.random.default_rng(7))
    x = rng.standard_normal((T, B, I)).astype(dtype)
    state = tuple(rng.standard_normal((layers, B, H)).astype(dtype) for _ in range(2))
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((layers, B, H)).astype(dtype) for _ in range(2))
    ref = run_module(m, x, state, lengths, dout, dstate, fast=False)
    fast = run_module(m, x, state, lengths, dout, dstate, fast=True)
    for name in ref:
        check_close(name, fast[name], ref[name], KERNEL[np.dtype(dtype)])


def seq2seq_grads(model, src, trg, ratio, fast):
    dispatch.set_enabled(fast)
    model.zero_grad()
    outputs = model(src, trg, ratio, generator=np.random.default_rng(8))
    doutputs = np.random.default_rng(9).standard_normal(outputs.shape).astype(outputs.dtype)
    model.backward(doutputs)
    return {"outputs": outputs, **{name: p.grad for name, p in model.named_parameters()}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("ratio", [0.5, 1.0])  # 0.5: the decoder's T=1 step loop; 1.0: one sequence call
def test_seq2seq_on_the_kernels_matches_the_reference(kernels, cell, dtype, ratio):
    rng = np.random.default_rng(10)
    S, T, B, V_in, V_out, E, H, L = 6, 5, 3, 11, 9, 4, 8, 2
    model = Seq2Seq(Encoder(V_in, H, E, L, cell=cell, dtype=dtype), Decoder(V_out, H, E, L, cell=cell, dtype=dtype))
    src = rng.integers(0, V_in, (S, B))
    trg = rng.integers(0, V_out, (T, B))
    ref = seq2seq_grads(model, src, trg, ratio, fast=False)
    fast = seq2seq_grads(model, src, trg, ratio, fast=True)
    assert all(p.grad is not None for p in model.parameters())
    for name in ref:
        check_close(name, fast[name], ref[name], KERNEL[np.dtype(dtype)])


# ---- the switch ------------------------------------------------------------------------------------

@pytest.fixture
def ran(monkeypatch, kernels):
    """The names of the steps every recurrent forward and backward ran with, in call order:
    {"forward": ["cpu v2", ...], "backward": [...]}."""
    seen = {"forward": [], "backward": []}
    forward, backward = ops.recurrent_forward, ops.recurrent_backward

    def spy_forward(cell, *args, steps=None, **kw):
        seen["forward"].append((steps or cell.reference).name)
        return forward(cell, *args, steps=steps, **kw)

    def spy_backward(dout, dstate_n, cache):
        seen["backward"].append(cache.steps.name)
        return backward(dout, dstate_n, cache)

    monkeypatch.setattr(ops, "recurrent_forward", spy_forward)
    monkeypatch.setattr(ops, "recurrent_backward", spy_backward)
    return seen


def forward_backward(m, dtype=np.float64):
    out = m(np.ones((2, 1, m.input_size), dtype=dtype))[0]
    m.backward(np.ones_like(out))


def test_the_kernels_are_the_default_with_numba(ran, kernels):
    assert dispatch.enabled()
    forward_backward(LSTM(3, 4, 2, dtype=np.float32), np.float32)
    default = kernels["lstm"].VERSIONS[kernels["lstm"].DEFAULT_VERSION].name
    assert ran == {"forward": [default] * 2, "backward": [default] * 2}


def test_environment_variable_0_selects_the_reference(ran, monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "0")
    assert not dispatch.enabled()
    forward_backward(LSTM(3, 4, 2, dtype=np.float64))
    assert ran == {"forward": ["reference"] * 2, "backward": ["reference"] * 2}
    dispatch.set_enabled(True)  # the function overrides the variable ...
    assert dispatch.enabled()
    dispatch.set_enabled(None)  # ... until handed back
    assert not dispatch.enabled()


def test_set_enabled_false_and_disabled_select_the_reference(ran):
    m = LSTM(3, 4, dtype=np.float64)
    dispatch.set_enabled(False)
    forward_backward(m)
    dispatch.set_enabled(True)
    with dispatch.disabled():
        forward_backward(m)
    assert dispatch.enabled(), "disabled() must restore the switch"
    assert ran["forward"] == ["reference"] * 2
    with pytest.raises(TypeError, match="True, False or None"):
        dispatch.set_enabled("0")


def test_the_reference_never_calls_the_kernels(kernels, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a fused kernel ran although the switch is off")

    lstm_cpu = kernels["lstm"]
    monkeypatch.setitem(lstm_cpu.VERSIONS, lstm_cpu.DEFAULT_VERSION, Steps.of("refuse", refuse, refuse))
    with pytest.raises(AssertionError, match="switch is off"):  # the stand-in does run when asked
        forward_backward(LSTM(3, 4, dtype=np.float64))
    with dispatch.disabled():
        forward_backward(LSTM(3, 4, dtype=np.float64))


def test_a_cache_is_consumed_by_the_steps_that_made_it(ran):
    """Flipping the switch between forward and backward changes nothing."""
    rng = np.random.default_rng(11)
    m = LSTM(3, 5, 2, dtype=np.float64)
    x, dout = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 5))
    with dispatch.disabled():
        m(x)
    dx_ref = m.backward(dout)  # made by the reference, the switch now on
    m(x)
    with dispatch.disabled():
        dx_fast = m.backward(dout)
    assert ran["backward"][:2] == ["reference"] * 2 and "reference" not in ran["backward"][2:]
    check_close("dx", dx_fast, dx_ref, KERNEL[np.dtype(np.float64)])


def test_gru_takes_the_kernels_and_rnn_and_float16_the_reference(ran, kernels):
    forward_backward(GRU(3, 4, dtype=np.float64))
    forward_backward(RNN(3, 4, dtype=np.float64))
    assert ran["forward"] == [kernels["gru"].VERSIONS[kernels["gru"].DEFAULT_VERSION].name, "reference"]
    lstm = ops.CELLS["lstm"]
    assert dispatch.recurrent_steps(lstm, np.ones((2, 1, 3), dtype=np.float16)) is lstm.reference


def test_minis2s_works_without_numba():
    """With Numba unimportable, the switch reports no kernels and the LSTM runs the reference."""
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import numpy as np\n"
        "from minis2s import dispatch, ops\n"
        "from minis2s.nn import LSTM\n"
        "assert not dispatch.available() and not dispatch.enabled()\n"
        "m = LSTM(3, 4, dtype=np.float64); out, _ = m(np.ones((2, 1, 3))); m.backward(np.ones_like(out))\n"
        "assert m.weight_hh_l0.grad is not None\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_one_switch_turns_off_the_cpu_and_the_gpu_kernels(monkeypatch):
    """MINIS2S_FASTPATH=0 and set_enabled(False) mean the same: the reference everywhere."""
    FakeCupy = type("ndarray", (), {"__module__": "cupy._core.core"})  # what is_gpu_array looks at
    gpu = Steps.of("cuda_c stand-in", None, None)
    monkeypatch.setattr(dispatch, "_gpu_steps", lambda: gpu)
    lstm = ops.CELLS["lstm"]
    assert dispatch.recurrent_steps(lstm, FakeCupy()) is gpu
    monkeypatch.setenv(dispatch.ENV_VAR, "0")
    assert dispatch.recurrent_steps(lstm, FakeCupy()) is lstm.reference
    assert dispatch.recurrent_steps(lstm, np.ones((2, 1, 3))) is lstm.reference
    monkeypatch.delenv(dispatch.ENV_VAR)
    dispatch.set_enabled(False)
    assert dispatch.recurrent_steps(lstm, FakeCupy()) is lstm.reference
    dispatch.set_enabled(None)
    with dispatch.disabled():
        assert dispatch.recurrent_steps(lstm, FakeCupy()) is lstm.reference
