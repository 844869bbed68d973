"""The fused CPU LSTM and GRU (kernels/lstm_cpu.py, gru_cpu.py) equal the float64 reference
(minis2s/ops), and the switch in minis2s/fastpath.py picks the path it says it picks.

Kernel level: every LSTM version through the shared harness (tests/lstm_kernel_harness.py: data
exactly representable in the dtype, float64 within 1e-12, float32 within 1e-5 of the float64
reference); the GRU the same way against ops.recurrent_forward/backward with the GRU cell.
Module level: nn.LSTM/nn.GRU (several layers, padding, dropout) and Seq2Seq (the decoder's T=1
step loop and its whole-sequence mode) on the fast path against the same module on the
reference path.
Without Numba the kernel tests skip; the library must still work (checked in a subprocess).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import check_close
from lstm_kernel_harness import TOL, check_all, check_sequence, draw

from minis2s import Decoder, Encoder, Seq2Seq, fastpath, ops
from minis2s.nn import GRU, LSTM, RNN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = [np.float64, np.float32]


def run_prints_ok(code):
    """Runs ``code`` in a fresh Python in the repository root; it must print ok and exit 0."""
    r = subprocess.run([sys.executable, "-c", code + "print('ok')\n"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.fixture(scope="module")
def lstm_cpu():
    pytest.importorskip("numba", reason="the fused CPU kernels need Numba (pip install numba)")
    from minis2s.kernels import lstm_cpu

    return lstm_cpu


@pytest.fixture(scope="module")
def gru_cpu(lstm_cpu):
    from minis2s.kernels import gru_cpu

    return gru_cpu


@pytest.fixture(autouse=True)
def switch_follows_environment(monkeypatch):
    """Every test starts with the fast path on (as a user with Numba gets it) and leaves it so."""
    monkeypatch.delenv(fastpath.ENV_VAR, raising=False)
    fastpath.set_enabled(None)
    yield
    fastpath.set_enabled(None)


# ---- the vectorisable tanh and sigmoid -------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_tanh_and_sigmoid_are_within_2_ulp_of_numpy(lstm_cpu, dtype):
    from numba import njit

    from minis2s.kernels.activations_cpu import sigmoid, tanh

    @njit(error_model="numpy")
    def apply(x, t, s):
        for j in range(x.shape[0]):
            t[j] = tanh(x[j])
            s[j] = sigmoid(x[j])

    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 0.625, -0.625, 0.6249999, 9.0, 9.1, 19.0, 19.1, 40.0, 1e30, -1e30, np.inf, -np.inf]
    x = np.concatenate([rng.standard_normal(20000) * s for s in (1e-30, 1e-6, 0.1, 0.5, 1, 3, 10, 30)]
                       + [np.linspace(-25, 25, 20001), special]).astype(dtype)
    t, s = np.empty_like(x), np.empty_like(x)
    apply(x, t, s)
    exact = np.tanh(x.astype(np.float64)).astype(dtype)  # correctly rounded to dtype
    ulps = np.abs(t.astype(np.float64) - exact) / np.spacing(np.abs(exact))
    worst = int(np.argmax(ulps))
    assert ulps.max() <= 2, f"tanh({x[worst]!r}) = {t[worst]!r}, exact {exact[worst]!r}: {ulps.max()} ulp"
    sig = 0.5 * (np.tanh(0.5 * x.astype(np.float64)) + 1.0)
    check_close("sigmoid", s, sig, 4 * np.finfo(dtype).eps)
    t_nan, s_nan = np.empty(1, dtype), np.empty(1, dtype)
    apply(np.array([np.nan], dtype), t_nan, s_nan)
    assert np.isnan(t_nan[0]) and np.isnan(s_nan[0]), "NaN must stay NaN"


# ---- kernels/blas_cpu.py: NumPy's cblas GEMM called from Numba ---------------------------------------

@pytest.fixture(scope="module")
def blas_cpu(lstm_cpu):
    from minis2s.kernels import blas_cpu

    if not blas_cpu.AVAILABLE:
        pytest.skip(f"no cblas for Numba here: {blas_cpu.UNAVAILABLE_REASON}")
    return blas_cpu


def operand_layouts(rng, dtype, rows, cols):
    """The same (rows, cols) values as a C array, a row slice of a 3-D array, a transposed view
    and a column-strided slice: every layout the kernels pass."""
    a = rng.standard_normal((rows, cols)).astype(dtype)
    stack = rng.standard_normal((3, rows, cols)).astype(dtype)
    stack[1] = a
    wide = rng.standard_normal((rows, cols + 5)).astype(dtype)
    wide[:, 2 : 2 + cols] = a
    return {"C": a, "row of 3-D": stack[1], "transposed": np.ascontiguousarray(a.T).T, "strided rows": wide[:, 2 : 2 + cols]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", [(5, 7, 3), (1, 9, 4), (6, 1, 5), (4, 8, 1), (16, 128, 512)])
def test_matmul_into_in_numba_equals_numpy_matmul(blas_cpu, dtype, M, K, N):
    from numba import njit

    @njit
    def call(a, b, out):
        blas_cpu.matmul_into(a, b, out)

    rng = np.random.default_rng(20)
    tol = TOL[np.dtype(dtype)]
    for (name_a, a), (name_b, b) in zip(operand_layouts(rng, dtype, M, K).items(),
                                        list(operand_layouts(rng, dtype, K, N).items())[::-1]):
        out = np.full((M, N), np.nan, dtype=dtype)
        call(a, b, out)
        check_close(f"a ({name_a}) @ b ({name_b})", out, a.astype(np.float64) @ b.astype(np.float64), tol)


def test_matmul_into_refuses_what_blas_cannot_read(blas_cpu):
    from numba import njit

    @njit
    def call(a, b, out):
        blas_cpu.matmul_into(a, b, out)

    a, b = np.ones((4, 6)), np.ones((6, 3))
    with pytest.raises(ValueError, match="shapes do not match"):
        call(a, b[:5], np.empty((4, 3)))
    with pytest.raises(ValueError, match="C-contiguous"):
        call(a, b, np.empty((3, 4)).T)
    with pytest.raises(ValueError, match="neither contiguous rows nor contiguous columns"):
        call(np.ones((8, 12))[::2, ::2], b, np.empty((4, 3)))


def test_matmul_into_calls_the_blas_numpy_loaded(blas_cpu):
    """The same library threadpoolctl controls, so minis2s/threads.py's scopes set its threads."""
    from threadpoolctl import threadpool_info

    assert blas_cpu.LIBRARY in [i["filepath"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert set(blas_cpu.FOUND) == {"float32", "float64"}


def test_version_3_is_left_out_cleanly_without_cblas():
    """Where NumPy's BLAS is not an ILP64 OpenBLAS, version 3 is absent, the default a version
    that runs, and the fast path works."""
    code = (
        "import threadpoolctl; threadpoolctl.threadpool_info = lambda: []\n"
        "import numpy as np\n"
        "from minis2s.kernels import blas_cpu, gru_cpu, lstm_cpu\n"
        "assert not blas_cpu.AVAILABLE and 'not OpenBLAS' in blas_cpu.UNAVAILABLE_REASON\n"
        "assert 3 not in lstm_cpu.VERSIONS and 3 not in gru_cpu.VERSIONS\n"
        "assert lstm_cpu.DEFAULT_VERSION in lstm_cpu.VERSIONS and gru_cpu.DEFAULT_VERSION in gru_cpu.VERSIONS\n"
        "from minis2s.nn import GRU, LSTM\n"
        "x = np.random.default_rng(0).standard_normal((2, 1, 3)).astype(np.float32)\n"
        "for m in (LSTM(3, 4, dtype=np.float32), GRU(3, 4, dtype=np.float32)):\n"
        "    out = m(x)[0]; m.backward(np.ones_like(out)); assert np.isfinite(m.weight_hh_l0.grad).all()\n"
    )
    run_prints_ok(code)


# ---- kernels/lstm_cpu.py against ops.lstm_forward/backward -------------------------------------------

SHAPES = {  # (T, B, I, H, lengths)
    "plain": (5, 3, 4, 7, None),
    "B=1": (6, 1, 3, 5, None),
    "T=1": (1, 4, 6, 3, None),
    "T=1,B=1": (1, 1, 2, 9, None),
    "H=37 odd": (4, 5, 11, 37, None),
    "padded": (6, 5, 3, 17, [6, 2, 1, 4, 6]),
    "all padded": (5, 3, 2, 6, [3, 1, 2]),
    "empty row": (4, 3, 2, 5, [4, 0, 2]),
}


def version_functions(module, version):
    """module.VERSIONS[version], or a skip saying why that version cannot run here."""
    if version not in module.VERSIONS:
        from minis2s.kernels import blas_cpu

        assert version == 3, f"version {version} is missing from {module.__name__}.VERSIONS"
        pytest.skip(f"version 3 needs NumPy's cblas from Numba: {blas_cpu.UNAVAILABLE_REASON}")
    return module.VERSIONS[version]


LSTM_VERSIONS = [1, 2, 3]  # kernels/lstm_cpu.py; 3 only where kernels/blas_cpu.py finds the cblas
GRU_VERSIONS = [2, 3]  # kernels/gru_cpu.py (numbered as the LSTM's; the GRU never had a version 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SHAPES))
@pytest.mark.parametrize("version", LSTM_VERSIONS)
def test_every_lstm_cpu_version_matches_reference(lstm_cpu, version, case, dtype):
    """Forward and backward, random non-zero h0, c0 and upstream gradients, padding."""
    T, B, I, H, lengths = SHAPES[case]
    rng = np.random.default_rng(1)
    check_sequence(None, dtype, T, B, I, H, rng, lengths=lengths, functions=version_functions(lstm_cpu, version))


def test_lstm_cpu_default_functions_match_reference(lstm_cpu):
    assert lstm_cpu.DEFAULT_VERSION in lstm_cpu.VERSIONS
    functions = (lstm_cpu.lstm_forward, lstm_cpu.lstm_backward)
    check_sequence(None, np.float32, 7, 6, 5, 33, np.random.default_rng(3), lengths=[7, 3, 7, 1, 5, 2],
                   functions=functions)


def test_version_3_runs_version_2s_kernels_when_loaded_from_the_cache(lstm_cpu):
    """Version 3 is version 2's step kernels in a compiled loop, and its cblas GEMMs are the calls
    np.matmul makes: its results equal version 2's bit for bit, never version 1's (libm's tanh).
    Run twice in fresh processes, so the second loads every kernel from Numba's on-disk cache,
    versions 1 and 2 first (the order in which a mix-up of their symbols showed)."""
    version_functions(lstm_cpu, 3)
    code = (
        "import numpy as np\n"
        "from minis2s.kernels import gru_cpu, lstm_cpu\n"
        "rng = np.random.default_rng(0)\n"
        "T, B, H = 6, 4, 16\n"
        "def run(module, version, gates, n_state):\n"
        "    forward, backward = module.VERSIONS[version]\n"
        "    r = np.random.default_rng(1)\n"
        "    x, dout = (r.standard_normal((T, B, H)).astype(np.float32) for _ in range(2))\n"
        "    state = [r.standard_normal((B, H)).astype(np.float32) for _ in range(n_state)]\n"
        "    w = [(r.standard_normal(s) / 4).astype(np.float32) for s in [(gates * H, H)] * 2 + [(gates * H,)] * 2]\n"
        "    out, _, cache = forward(x, *state, *w, lengths=[6, 2, 5, 6])\n"
        "    return [out, *backward(dout, *[None] * n_state, cache)]\n"
        "lstm = {v: run(lstm_cpu, v, 4, 2) for v in (2, 1, 3)}\n"
        "assert any((a != b).any() for a, b in zip(lstm[1], lstm[2])), 'versions 1 and 2 agree: no test'\n"
        "assert all((a == b).all() for a, b in zip(lstm[3], lstm[2])), 'LSTM version 3 differs from version 2'\n"
        "gru = {v: run(gru_cpu, v, 3, 1) for v in (2, 3)}\n"
        "assert all((a == b).all() for a, b in zip(gru[3], gru[2])), 'GRU version 3 differs from version 2'\n"
    )
    for _ in range(2):
        run_prints_ok(code)


@pytest.mark.parametrize("version", LSTM_VERSIONS)
def test_lstm_cpu_backward_takes_any_versions_cache(lstm_cpu, version):
    """Every version's forward makes the same cache: version 2's backward on it, and it on
    version 2's cache, give the reference's gradients."""
    version_functions(lstm_cpu, version)
    for forward_v, backward_v in ((version, 2), (2, version)):
        functions = (lstm_cpu.VERSIONS[forward_v][0], lstm_cpu.VERSIONS[backward_v][1])
        check_sequence(None, np.float64, 6, 5, 3, 17, np.random.default_rng(14), lengths=[6, 2, 1, 4, 6],
                       functions=functions)


@pytest.mark.parametrize("upstream", [("dout",), ("dh_n", "dc_n"), ("dc_n",), ()])
@pytest.mark.parametrize("lengths", [None, [5, 3, 1, 5]])
@pytest.mark.parametrize("version", LSTM_VERSIONS)
def test_lstm_cpu_backward_with_missing_upstream_gradients_matches_reference(lstm_cpu, version, upstream, lengths):
    """dout None (the encoder), dh_n/dc_n None (outputs only): the missing ones count as zeros."""
    rng = np.random.default_rng(2)
    functions = version_functions(lstm_cpu, version)
    check_sequence(None, np.float64, 5, 4, 3, 6, rng, lengths=lengths, upstream=upstream, functions=functions)


@pytest.mark.parametrize("version", LSTM_VERSIONS)
def test_lstm_cpu_does_not_modify_its_inputs(lstm_cpu, version):
    lstm_forward, lstm_backward = version_functions(lstm_cpu, version)
    rng = np.random.default_rng(4)
    T, B, I, H = 4, 3, 5, 6
    args = [rng.standard_normal(s) for s in [(T, B, I), (B, H), (B, H), (4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]]
    grads = [rng.standard_normal(s) for s in [(T, B, H), (B, H), (B, H)]]
    copies = [a.copy() for a in args + grads]
    _, _, cache = lstm_forward(*args, lengths=np.array([4, 2, 3]))
    lstm_backward(*grads, cache)
    for a, c in zip(args + grads, copies):
        np.testing.assert_array_equal(a, c)


# ---- kernels/gru_cpu.py against ops.recurrent_forward/backward with the GRU cell ---------------------

def check_gru_sequence(gru_cpu, dtype, T, B, I, H, rng, lengths=None, upstream=("dout", "dh_n"), functions=None):
    """``functions`` (gru_forward, gru_backward) of kernels/gru_cpu.py (default: the module's
    defaults) in ``dtype`` vs the float64 reference on the same values."""
    dtype = np.dtype(dtype)
    x, h0, dout, dh_n = draw(rng, dtype, [(T, B, I), (B, H), (T, B, H), (B, H)])
    w = draw(rng, dtype, [(3 * H, I), (3 * H, H), (3 * H,), (3 * H,)], scale=1.0 / np.sqrt(H))
    dout, dh_n = (dout if "dout" in upstream else None), (dh_n if "dh_n" in upstream else None)
    out_r, (h_r,), cache_r = ops.recurrent_forward(ops.CELLS["gru"], x, (h0,), *w, lengths=lengths)
    dx_r, (dh0_r,), dparams_r = ops.recurrent_backward(dout, (dh_n,), cache_r)

    def cast(a):
        return None if a is None else a.astype(dtype)

    gru_forward, gru_backward = functions or (gru_cpu.gru_forward, gru_cpu.gru_backward)
    out, h_n, cache = gru_forward(cast(x), cast(h0), *map(cast, w), lengths=lengths)
    dx, dh0, *dparams = gru_backward(cast(dout), cast(dh_n), cache)
    names = ("out", "h_n", "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")
    ours = dict(zip(names, (out, h_n, dx, dh0, *dparams)))
    assert all(a.dtype == dtype for a in ours.values())
    return check_all(ours, dict(zip(names, (out_r, h_r, dx_r, dh0_r, *dparams_r))), TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SHAPES))
@pytest.mark.parametrize("version", GRU_VERSIONS)
def test_every_gru_cpu_version_matches_reference(gru_cpu, version, case, dtype):
    T, B, I, H, lengths = SHAPES[case]
    check_gru_sequence(gru_cpu, dtype, T, B, I, H, np.random.default_rng(12), lengths=lengths,
                       functions=version_functions(gru_cpu, version))


def test_gru_cpu_default_functions_match_reference(gru_cpu):
    assert gru_cpu.DEFAULT_VERSION in gru_cpu.VERSIONS
    check_gru_sequence(gru_cpu, np.float32, 7, 6, 5, 33, np.random.default_rng(15), lengths=[7, 3, 7, 1, 5, 2])


@pytest.mark.parametrize("upstream", [("dout",), ("dh_n",), ()])
@pytest.mark.parametrize("lengths", [None, [5, 3, 1, 5]])
@pytest.mark.parametrize("version", GRU_VERSIONS)
def test_gru_cpu_backward_with_missing_upstream_gradients_matches_reference(gru_cpu, version, upstream, lengths):
    check_gru_sequence(gru_cpu, np.float64, 5, 4, 3, 6, np.random.default_rng(13), lengths, upstream,
                       functions=version_functions(gru_cpu, version))


# ---- nn.LSTM, nn.GRU and Seq2Seq: the fast path against the reference path of the same module ---------------

def run_module(m, x, state, lengths, dout, dstate, fast):
    """Forward + backward on one path -> every output, input/state gradient and parameter gradient."""
    fastpath.set_enabled(fast)
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
def test_module_fast_path_matches_reference_path(gru_cpu, module, dtype, layers, lengths, dropout):
    rng = np.random.default_rng(6)
    T, B, I, H = 5, 3, 4, 13
    m = module(I, H, layers, dropout=dropout, dtype=dtype, rng=np.random.default_rng(7))
    x = rng.standard_normal((T, B, I)).astype(dtype)
    state = tuple(rng.standard_normal((layers, B, H)).astype(dtype) for _ in range(2))
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((layers, B, H)).astype(dtype) for _ in range(2))
    ref = run_module(m, x, state, lengths, dout, dstate, fast=False)
    fast = run_module(m, x, state, lengths, dout, dstate, fast=True)
    tol = TOL[np.dtype(dtype)]
    for name in ref:
        check_close(name, fast[name], ref[name], tol)


def seq2seq_grads(model, src, trg, ratio, fast):
    fastpath.set_enabled(fast)
    model.zero_grad()
    outputs = model(src, trg, ratio, generator=np.random.default_rng(8))
    doutputs = np.random.default_rng(9).standard_normal(outputs.shape).astype(outputs.dtype)
    model.backward(doutputs)
    return {"outputs": outputs, **{name: p.grad for name, p in model.named_parameters()}}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("ratio", [0.5, 1.0])  # 0.5: the decoder's T=1 step loop; 1.0: one sequence call
def test_seq2seq_fast_path_matches_reference_path(gru_cpu, cell, dtype, ratio):
    rng = np.random.default_rng(10)
    S, T, B, V_in, V_out, E, H, L = 6, 5, 3, 11, 9, 4, 8, 2
    model = Seq2Seq(Encoder(V_in, H, E, L, cell=cell, dtype=dtype), Decoder(V_out, H, E, L, cell=cell, dtype=dtype))
    src = rng.integers(0, V_in, (S, B))
    trg = rng.integers(0, V_out, (T, B))
    ref = seq2seq_grads(model, src, trg, ratio, fast=False)
    fast = seq2seq_grads(model, src, trg, ratio, fast=True)
    assert all(p.grad is not None for p in model.parameters())
    for name in ref:
        check_close(name, fast[name], ref[name], TOL[np.dtype(dtype)])


# ---- the switch ------------------------------------------------------------------------------------

@pytest.fixture
def calls(monkeypatch, gru_cpu):
    """Counts the calls of every recurrent implementation: {"lstm_cpu.lstm_forward": n, ...}."""
    from minis2s.kernels import lstm_cpu

    counts = {}

    def counted(key, f):
        def call(*args, **kwargs):
            counts[key] += 1
            return f(*args, **kwargs)
        return call

    targets = {"lstm_cpu": lstm_cpu, "gru_cpu": gru_cpu, "ops": ops}
    for prefix, name in [("lstm_cpu", "lstm_forward"), ("lstm_cpu", "lstm_backward"), ("gru_cpu", "gru_forward"),
                         ("gru_cpu", "gru_backward"), ("ops", "recurrent_forward"), ("ops", "recurrent_backward")]:
        counts[f"{prefix}.{name}"] = 0
        monkeypatch.setattr(targets[prefix], name, counted(f"{prefix}.{name}", getattr(targets[prefix], name)))
    return counts


def forward_backward(m, dtype=np.float64):
    out = m(np.ones((2, 1, m.input_size), dtype=dtype))[0]
    m.backward(np.ones_like(out))


def test_fast_path_is_the_default_with_numba(calls):
    assert fastpath.enabled()
    forward_backward(LSTM(3, 4, 2, dtype=np.float32), np.float32)
    assert calls["lstm_cpu.lstm_forward"] == calls["lstm_cpu.lstm_backward"] == 2
    assert calls["ops.recurrent_forward"] == calls["ops.recurrent_backward"] == 0


def test_environment_variable_0_selects_the_reference(calls, monkeypatch):
    monkeypatch.setenv(fastpath.ENV_VAR, "0")
    assert not fastpath.enabled()
    forward_backward(LSTM(3, 4, 2, dtype=np.float64))
    assert calls["ops.recurrent_forward"] == calls["ops.recurrent_backward"] == 2
    assert calls["lstm_cpu.lstm_forward"] == calls["lstm_cpu.lstm_backward"] == 0
    fastpath.set_enabled(True)  # the function overrides the variable ...
    assert fastpath.enabled()
    fastpath.set_enabled(None)  # ... until handed back
    assert not fastpath.enabled()


def test_set_enabled_false_and_disabled_select_the_reference(calls):
    m = LSTM(3, 4, dtype=np.float64)
    fastpath.set_enabled(False)
    forward_backward(m)
    fastpath.set_enabled(True)
    with fastpath.disabled():
        forward_backward(m)
    assert fastpath.enabled(), "disabled() must restore the switch"
    assert calls["ops.recurrent_forward"] == 2 and calls["lstm_cpu.lstm_forward"] == 0
    with pytest.raises(TypeError, match="True, False or None"):
        fastpath.set_enabled("0")


def test_the_reference_path_never_calls_the_kernels(lstm_cpu, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the fused kernel ran although the fast path is off")

    monkeypatch.setattr(lstm_cpu, "lstm_forward", refuse)
    monkeypatch.setattr(lstm_cpu, "lstm_backward", refuse)
    with fastpath.disabled():
        forward_backward(LSTM(3, 4, dtype=np.float64))


def test_a_cache_is_consumed_by_the_path_that_made_it(calls):
    """Flipping the switch between forward and backward changes nothing."""
    rng = np.random.default_rng(11)
    m = LSTM(3, 5, 2, dtype=np.float64)
    x, dout = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 5))
    with fastpath.disabled():
        m(x)
    dx_ref = m.backward(dout)  # made on the reference path, the switch now on
    assert calls["ops.recurrent_backward"] == 2 and calls["lstm_cpu.lstm_backward"] == 0
    m(x)
    with fastpath.disabled():
        dx_fast = m.backward(dout)
    assert calls["lstm_cpu.lstm_backward"] == 2
    check_close("dx", dx_fast, dx_ref, TOL[np.dtype(np.float64)])


def test_gru_takes_the_fast_path_and_rnn_and_float16_the_reference(calls):
    forward_backward(GRU(3, 4, dtype=np.float64))
    assert calls["gru_cpu.gru_forward"] == calls["gru_cpu.gru_backward"] == 1
    forward_backward(RNN(3, 4, dtype=np.float64))
    assert calls["ops.recurrent_forward"] == calls["ops.recurrent_backward"] == 1
    assert fastpath.recurrent_functions(ops.CELLS["lstm"], np.ones((2, 1, 3), dtype=np.float16))[0] is \
        ops.recurrent_forward


def test_minis2s_works_without_numba():
    """With Numba unimportable, the switch reports no fast path and the LSTM runs the reference."""
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import numpy as np\n"
        "from minis2s import fastpath, ops\n"
        "from minis2s.nn import LSTM\n"
        "assert not fastpath.available() and not fastpath.enabled()\n"
        "m = LSTM(3, 4, dtype=np.float64); out, _ = m(np.ones((2, 1, 3))); m.backward(np.ones_like(out))\n"
        "assert m.weight_hh_l0.grad is not None\n"
    )
    run_prints_ok(code)


def test_one_switch_turns_off_the_cpu_and_the_gpu_paths(monkeypatch):
    """MINIS2S_FASTPATH=0 and set_enabled(False) mean the same: the reference everywhere (once the
    variable turned off the CPU kernels only, and the GPU path listened to set_enabled alone)."""
    from minis2s import fastpath, ops

    FakeCupy = type("ndarray", (), {"__module__": "cupy._core.core"})  # what recurrent_functions looks at
    lstm, reference = ops.CELLS["lstm"], (ops.recurrent_forward, ops.recurrent_backward)
    fastpath.set_enabled(None)
    try:
        monkeypatch.delenv(fastpath.ENV_VAR, raising=False)
        assert fastpath.recurrent_functions(lstm, FakeCupy()) == fastpath.GPU["lstm"]
        monkeypatch.setenv(fastpath.ENV_VAR, "0")
        assert fastpath.recurrent_functions(lstm, FakeCupy()) == reference
        assert fastpath.recurrent_functions(lstm, np.ones((2, 1, 3))) == reference
        monkeypatch.delenv(fastpath.ENV_VAR)
        fastpath.set_enabled(False)
        assert fastpath.recurrent_functions(lstm, FakeCupy()) == reference
        with fastpath.disabled():
            assert fastpath.recurrent_functions(lstm, FakeCupy()) == reference
    finally:
        fastpath.set_enabled(None)
