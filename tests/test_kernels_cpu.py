"""Every fused CPU kernel equals the float64 reference: kernels/lstm_cpu.py, gru_cpu.py and the
helpers they are built from (kernels/activations_cpu.py, kernels/blas_cpu.py).

Each version of each cell's steps runs through the one recurrence driver and is checked by the
one harness (kernels/harness.py: data exactly representable in the dtype; outputs, final states,
every gradient and the cache within minis2s.tolerances.KERNEL: float64 1e-12, float32 1e-5 of
the float64 reference). Without Numba these tests skip; the library must still work
(tests/test_dispatch.py checks that in a subprocess).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import check_close
from minis2s.kernels.harness import check_steps

from minis2s import ops
from minis2s.tolerances import KERNEL

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


# ---- the vectorisable tanh and sigmoid -------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_tanh_and_sigmoid_are_within_2_ulp_of_numpy(lstm_cpu, dtype):
    from minis2s.kernels.activations_cpu import sigmoid, tanh
    from numba import njit

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


def test_rational_tanh_is_within_7_ulp_in_float32_and_the_accurate_one_in_float64(lstm_cpu):
    # Eigen's rational tanh (version 4's): ≤ 7 ulp in float32 (measured 6.6 near |x| = 5.8; the
    # accurate float32 tanh: ≤ 2), so ≤ 4.2e-7 absolute; float64 is the accurate tanh, bit for bit.
    from minis2s.kernels.activations_cpu import sigmoid, sigmoid_rational, tanh, tanh_rational
    from numba import njit

    @njit(error_model="numpy")
    def apply(x, t, s, t_acc, s_acc):
        for j in range(x.shape[0]):
            t[j], s[j] = tanh_rational(x[j]), sigmoid_rational(x[j])
            t_acc[j], s_acc[j] = tanh(x[j]), sigmoid(x[j])

    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 4e-4, -4e-4, 3.9999e-4, 7.905, 7.906, 9.1, 1e30, -1e30, np.inf, -np.inf]
    x64 = np.concatenate([rng.standard_normal(20000) * s for s in (1e-30, 1e-6, 1e-3, 0.1, 0.5, 1, 3, 10, 30)]
                         + [np.linspace(-25, 25, 200001), special])
    for dtype in DTYPES:
        x = x64.astype(dtype)
        t, s, t_acc, s_acc = (np.empty_like(x) for _ in range(4))
        apply(x, t, s, t_acc, s_acc)
        if dtype == np.float64:
            np.testing.assert_array_equal(t, t_acc)
            np.testing.assert_array_equal(s, s_acc)
            continue
        exact = np.tanh(x.astype(np.float64)).astype(dtype)
        ulps = np.abs(t.astype(np.float64) - exact) / np.spacing(np.abs(exact))
        worst = int(np.argmax(ulps))
        assert 2 < ulps.max() <= 7, f"tanh_rational({x[worst]!r}) = {t[worst]!r}, exact {exact[worst]!r}: {ulps.max()} ulp"
        assert np.all(np.abs(t) <= 1) and np.array_equal(t, -apply_neg(apply, x)), "not odd or beyond ±1"
        check_close("sigmoid_rational", s, 0.5 * (np.tanh(0.5 * x.astype(np.float64)) + 1.0), 4e-7)
    t_nan = [np.empty(1, np.float32) for _ in range(4)]
    apply(np.array([np.nan], np.float32), *t_nan)
    assert np.isnan(t_nan[0][0]) and np.isnan(t_nan[1][0]), "NaN must stay NaN"


def apply_neg(apply, x):
    """tanh_rational(-x), through the same compiled loop."""
    out = [np.empty_like(x) for _ in range(4)]
    apply(-x, *out)
    return out[0]


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
    tol = KERNEL[np.dtype(dtype)]
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


# ---- every version of kernels/lstm_cpu.py and gru_cpu.py through the driver, against the reference --

SHAPES = {  # (T, B, I, H, lengths)
    "plain": (5, 3, 4, 7, None),
    "B=1": (6, 1, 3, 5, None),
    "T=1": (1, 4, 6, 3, None),
    "T=1,B=1": (1, 1, 2, 9, None),
    "H=37 odd": (4, 5, 11, 37, None),
    "padded": (6, 5, 3, 17, [6, 2, 1, 4, 6]),
    "all padded": (5, 3, 2, 6, [3, 1, 2]),
    "empty row": (4, 3, 2, 5, [4, 0, 2]),
    "longest first": (7, 5, 3, 9, [7, 5, 5, 2, 1]),  # the step GEMMs shrink as rows finish
}
LSTM_VERSIONS = [1, 2, 3, 4]  # kernels/lstm_cpu.py; 3 only where kernels/blas_cpu.py finds the cblas
GRU_VERSIONS = [2, 3]  # kernels/gru_cpu.py (numbered as the LSTM's; the GRU never had a version 1)
CELL_VERSIONS = [("lstm", v) for v in LSTM_VERSIONS] + [("gru", v) for v in GRU_VERSIONS]


@pytest.fixture(scope="module")
def kernel_modules(lstm_cpu, gru_cpu):
    return {"lstm": lstm_cpu, "gru": gru_cpu}


def version_steps(module, version):
    """module.VERSIONS[version] (an ops.Steps), or a skip saying why that version cannot run here."""
    if version not in module.VERSIONS:
        from minis2s.kernels import blas_cpu

        assert version == 3, f"version {version} is missing from {module.__name__}.VERSIONS"
        pytest.skip(f"version 3 needs NumPy's cblas from Numba: {blas_cpu.UNAVAILABLE_REASON}")
    return module.VERSIONS[version]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SHAPES))
@pytest.mark.parametrize("cell,version", CELL_VERSIONS)
def test_every_cpu_kernel_version_matches_reference(kernel_modules, cell, version, case, dtype):
    """Forward and backward, random non-zero initial states and upstream gradients, padding;
    the cache too (one layout for every implementation)."""
    T, B, I, H, lengths = SHAPES[case]
    steps = version_steps(kernel_modules[cell], version)
    check_steps(ops.CELLS[cell], steps, dtype, T, B, I, H, np.random.default_rng(1), lengths=lengths)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_default_version_is_one_that_runs(kernel_modules, cell):
    module = kernel_modules[cell]
    assert module.DEFAULT_VERSION in module.VERSIONS
    check_steps(ops.CELLS[cell], module.VERSIONS[module.DEFAULT_VERSION], np.float32, 7, 6, 5, 33,
                np.random.default_rng(3), lengths=[7, 3, 7, 1, 5, 2])


UPSTREAM = {"lstm": [("dout",), ("dh_n", "dc_n"), ("dh_n",), ("dc_n",), ()],  # the gradients backward is given
            "gru": [("dout",), ("dh_n",), ()]}


@pytest.mark.parametrize("lengths", [None, [5, 3, 1, 5]])
@pytest.mark.parametrize("cell,version,upstream", [(c, v, u) for c, v in CELL_VERSIONS for u in UPSTREAM[c]])
def test_backward_with_missing_upstream_gradients_matches_reference(kernel_modules, cell, version, upstream,
                                                                    lengths):
    """dout None (the encoder), dh_n/dc_n None (outputs only): the missing ones count as zeros."""
    steps = version_steps(kernel_modules[cell], version)
    check_steps(ops.CELLS[cell], steps, np.float64, 5, 4, 3, 6, np.random.default_rng(2), lengths=lengths,
                upstream=upstream)


@pytest.mark.parametrize("cell,version", CELL_VERSIONS)
def test_any_implementations_backward_takes_any_ones_cache(kernel_modules, cell, version):
    """One cache layout: the reference's backward on a kernel's cache, and a kernel's backward on
    the reference's cache, give the reference's gradients."""
    steps = version_steps(kernel_modules[cell], version)
    kind = ops.CELLS[cell]
    rng = np.random.default_rng(14)
    T, B, I, H = 6, 5, 3, 17
    lengths = [6, 2, 1, 4, 6]
    x = rng.standard_normal((T, B, I))
    state0 = tuple(rng.standard_normal((B, H)) for _ in range(kind.n_states))
    G = kind.gates * H
    w = [rng.standard_normal(s) / 4 for s in [(G, I), (G, H), (G,), (G,)]]
    dout = rng.standard_normal((T, B, H))
    dstate = tuple(rng.standard_normal((B, H)) for _ in range(kind.n_states))
    _, _, ref_cache = ops.recurrent_forward(kind, x, state0, *w, lengths=lengths)
    _, _, kernel_cache = ops.recurrent_forward(kind, x, state0, *w, lengths=lengths, steps=steps)
    ref = ops.recurrent_backward(dout, dstate, ref_cache)
    for cache in (kernel_cache._replace(steps=kind.reference), ref_cache._replace(steps=steps)):
        dx, ds0, dw = ops.recurrent_backward(dout, dstate, cache)
        check_close("dx", dx, ref[0], KERNEL[np.dtype(np.float64)])
        for name, a, b in zip(("ds0",) * 2 + ("dw",) * 4, (*ds0, *dw), (*ref[1], *ref[2])):
            check_close(name, a, b, KERNEL[np.dtype(np.float64)])


@pytest.mark.parametrize("lengths", [[7, 5, 5, 2, 1], [2, 7, 1, 5, 5], [3, 3, 0, 1, 0]],
                         ids=["longest first", "unsorted", "empty rows last"])
@pytest.mark.parametrize("cell,version", [("lstm", "reference"), ("gru", "reference")] + CELL_VERSIONS)
def test_padded_rows_equal_each_row_run_alone(kernel_modules, cell, version, lengths):
    """The truth the GEMMs' skipped rows (ops.step_rows) must keep: a padded batch gives
    each row what that row gives alone, run for its own length with no padding at all —
    outputs, final state, dx, dstate0, and weight gradients that sum over the rows. Float64;
    the two computations sum in other orders (GEMMs of B rows against one), so KERNEL's bound."""
    kind = ops.CELLS[cell]
    steps = kind.reference if version == "reference" else version_steps(kernel_modules[cell], version)
    rng = np.random.default_rng(15)
    T, B, I, H = 7, len(lengths), 3, 9
    G = kind.gates * H
    x = rng.standard_normal((T, B, I))
    state0 = tuple(rng.standard_normal((B, H)) for _ in range(kind.n_states))
    w = [rng.standard_normal(s) / 3 for s in [(G, I), (G, H), (G,), (G,)]]
    dout = rng.standard_normal((T, B, H))
    dstate = tuple(rng.standard_normal((B, H)) for _ in range(kind.n_states))
    out, state_n, cache = ops.recurrent_forward(kind, x, state0, *w, lengths=lengths, steps=steps)
    dx, dstate0, dw = ops.recurrent_backward(dout, dstate, cache)
    tol = KERNEL[np.dtype(np.float64)]
    dw_rows = [np.zeros_like(a) for a in dw]
    for b, n in enumerate(lengths):
        row_state0 = tuple(s[b : b + 1] for s in state0)
        row_dstate = tuple(d[b : b + 1] for d in dstate)
        if n == 0:  # no step: the final state is state0, its gradient passes straight through
            for name, a, r in zip(("state_n", "dstate0"), (state_n, dstate0), (row_state0, row_dstate)):
                for k in range(kind.n_states):
                    check_close(f"{name}[{k}] row {b}", a[k][b : b + 1], r[k], tol)
            continue
        o, sn, c = ops.recurrent_forward(kind, x[:n, b : b + 1], row_state0, *w, steps=steps)
        rdx, rds0, rdw = ops.recurrent_backward(dout[:n, b : b + 1], row_dstate, c)
        check_close(f"out row {b}", out[:n, b : b + 1], o, tol)
        assert not out[n:, b].any(), f"row {b}: padded steps must emit zeros"
        check_close(f"dx row {b}", dx[:n, b : b + 1], rdx, tol)
        assert not dx[n:, b].any(), f"row {b}: padded steps must get no gradient"
        for k in range(kind.n_states):
            check_close(f"state_n[{k}] row {b}", state_n[k][b : b + 1], sn[k], tol)
            check_close(f"dstate0[{k}] row {b}", dstate0[k][b : b + 1], rds0[k], tol)
        for acc, a in zip(dw_rows, rdw):
            acc += a
    for name, a, r in zip(("dw_ih", "dw_hh", "db_ih", "db_hh"), dw, dw_rows):
        check_close(f"{name}: the batch against the rows' sum", a, r, tol)


@pytest.mark.parametrize("cell,version", CELL_VERSIONS)
def test_kernels_do_not_modify_their_inputs(kernel_modules, cell, version):
    steps = version_steps(kernel_modules[cell], version)
    kind = ops.CELLS[cell]
    rng = np.random.default_rng(4)
    T, B, I, H = 4, 3, 5, 6
    G = kind.gates * H
    state0 = tuple(rng.standard_normal((B, H)) for _ in range(kind.n_states))
    args = [rng.standard_normal(s) for s in [(T, B, I), (G, I), (G, H), (G,), (G,)]]
    grads = [rng.standard_normal((T, B, H))] + [rng.standard_normal((B, H)) for _ in range(kind.n_states)]
    copies = [a.copy() for a in [*state0, *args, *grads]]
    _, _, cache = ops.recurrent_forward(kind, args[0], state0, *args[1:], lengths=np.array([4, 2, 3]), steps=steps)
    ops.recurrent_backward(grads[0], tuple(grads[1:]), cache)
    for a, c in zip([*state0, *args, *grads], copies):
        np.testing.assert_array_equal(a, c)


def test_version_3_runs_version_2s_kernels_when_loaded_from_the_cache(lstm_cpu):
    """Version 3 is version 2's step kernels in a compiled loop, and its cblas GEMMs are the calls
    np.matmul makes: its results equal version 2's bit for bit, never version 1's (libm's tanh).
    Run twice in fresh processes, so the second loads every kernel from Numba's on-disk cache,
    versions 1 and 2 first (the order in which a mix-up of their symbols showed)."""
    version_steps(lstm_cpu, 3)
    code = (
        "import numpy as np\n"
        "from minis2s import ops\n"
        "from minis2s.kernels import gru_cpu, lstm_cpu\n"
        "T, B, H = 6, 4, 16\n"
        "def run(module, version, cell):\n"
        "    kind = ops.CELLS[cell]\n"
        "    r = np.random.default_rng(1)\n"
        "    x, dout = (r.standard_normal((T, B, H)).astype(np.float32) for _ in range(2))\n"
        "    state = tuple(r.standard_normal((B, H)).astype(np.float32) for _ in range(kind.n_states))\n"
        "    G = kind.gates * H\n"
        "    w = [(r.standard_normal(s) / 4).astype(np.float32) for s in [(G, H)] * 2 + [(G,)] * 2]\n"
        "    out, _, cache = ops.recurrent_forward(kind, x, state, *w, lengths=[6, 2, 5, 6],\n"
        "                                          steps=module.VERSIONS[version])\n"
        "    dx, ds0, dw = ops.recurrent_backward(dout, (None,) * kind.n_states, cache)\n"
        "    return [out, dx, *ds0, *dw]\n"
        "lstm = {v: run(lstm_cpu, v, 'lstm') for v in (2, 1, 3)}\n"
        "assert any((a != b).any() for a, b in zip(lstm[1], lstm[2])), 'versions 1 and 2 agree: no test'\n"
        "assert all((a == b).all() for a, b in zip(lstm[3], lstm[2])), 'LSTM version 3 differs from version 2'\n"
        "gru = {v: run(gru_cpu, v, 'gru') for v in (2, 3)}\n"
        "assert all((a == b).all() for a, b in zip(gru[3], gru[2])), 'GRU version 3 differs from version 2'\n"
    )
    for _ in range(2):
        run_prints_ok(code)


def test_each_kernel_file_validates_itself_when_run(kernel_modules):
    """``python -m minis2s.kernels.gru_cpu`` (and lstm_cpu): every version against the reference,
    as llm.c's dev/cuda files do before timing; one line per version and dtype."""
    r = subprocess.run([sys.executable, "-m", "minis2s.kernels.gru_cpu"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 * len(kernel_modules["gru"].VERSIONS), r.stdout
    assert all("max relative error" in line for line in lines)


# ---- Numba's on-disk cache sees edits to any kernel file ----------------------------------------------

def test_every_cached_kernel_is_stamped_by_the_whole_kernels_folder(lstm_cpu, gru_cpu):
    """Each compiled kernel's cache locator is kernels/numba_cache.py's: its stamp is the hash of
    every .py file in kernels/, not of the one file that defines the kernel."""
    from minis2s.kernels import numba_cache

    steps = [*lstm_cpu.VERSIONS.values(), *gru_cpu.VERSIONS.values()]
    fns = {f for s in steps for f in (s.forward_step, s.backward_step, s.forward_loop, s.backward_loop)}
    dispatchers = [f for f in fns if hasattr(f, "_cache")]  # the Python loops of versions 1, 2, 4 are not compiled
    assert len(dispatchers) >= len(lstm_cpu._FORWARD_STEP) + 1 + 2, dispatchers  # + backward + v3 loops
    for d in dispatchers:
        locator = d._cache._impl.locator
        assert isinstance(locator, numba_cache._FolderStamped), (d, type(locator))
        assert locator.get_source_stamp() == numba_cache.folder_stamp()


def test_folder_stamp_follows_every_python_file_and_only_those(tmp_path, lstm_cpu):
    from minis2s.kernels.numba_cache import folder_stamp

    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    first = folder_stamp(str(tmp_path))
    (tmp_path / "notes.txt").write_text("not code\n")
    assert folder_stamp(str(tmp_path)) == first
    (tmp_path / "b.py").write_text("y = 3\n")  # same size, other content
    second = folder_stamp(str(tmp_path))
    assert second != first
    (tmp_path / "c.py").write_text("")
    assert folder_stamp(str(tmp_path)) not in (first, second)


def test_a_cached_kernel_recompiles_when_a_file_it_inlines_changes(tmp_path, lstm_cpu):
    """The bug this guards against, end to end: kern.py's cached function inlines dep.py's; dep.py
    changes; a fresh process must run the new dep.py. With Numba's own stamp (kern.py's hash alone)
    the stale cached result comes back, which the first half checks, so this test can fail."""
    (tmp_path / "dep.py").write_text("from numba.extending import register_jitable\n"
                                     "@register_jitable\ndef g(x):\n    return x + 1.0\n")
    (tmp_path / "kern.py").write_text("from numba import njit\nfrom dep import g\n"
                                      "@njit(cache=True)\ndef f(x):\n    return g(x) * 2.0\n")

    def run(stamped):
        setup = (f"from minis2s.kernels import numba_cache\nnumba_cache.install({str(tmp_path)!r})\n"
                 if stamped else "")
        code = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n{setup}import kern\nprint(kern.f(1.0))\n"
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           check=False)
        assert r.returncode == 0, r.stderr
        return float(r.stdout.strip().splitlines()[-1])

    def edit_dep(new):
        (tmp_path / "dep.py").write_text((tmp_path / "dep.py").read_text().replace(new[0], new[1]))

    for stamped in (False, True):
        for p in tmp_path.glob("__pycache__/*.nb*"):
            p.unlink()
        assert run(stamped) == (1.0 + 1.0) * 2.0
        edit_dep(("x + 1.0", "x + 5.0"))
        assert run(stamped) == ((1.0 + 5.0) * 2.0 if stamped else (1.0 + 1.0) * 2.0)  # Numba's own: stale
        edit_dep(("x + 5.0", "x + 1.0"))


# ---- the embedding's scatter-add (kernels/embedding_cpu.py) --------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("id_dtype", [np.int64, np.int32])
def test_embedding_scatter_add_is_np_add_at_bit_for_bit(dtype, id_dtype):
    # Tolerance 0: the kernel adds each occurrence's row in the ids' order, from 0, with fastmath
    # off: np.add.at's additions in np.add.at's order. Many repeats (1,408 ids of 43 rows, G2P's
    # decoder table), so an order-changing or a last-occurrence-wins kernel fails.
    pytest.importorskip("numba", reason="the fused CPU kernels need Numba (pip install numba)")
    from minis2s.kernels import embedding_cpu

    rng = np.random.default_rng(7)
    ids = rng.integers(0, 43, 1408).astype(id_dtype)
    dout = (rng.standard_normal((1408, 128)) * rng.uniform(0.01, 100, (1408, 1))).astype(dtype)
    want = np.zeros((43, 128), dtype=dtype)
    np.add.at(want, ids, dout)
    got = np.zeros((43, 128), dtype=dtype)
    embedding_cpu.scatter_add(got, ids, dout)
    np.testing.assert_array_equal(got, want)
    shuffled = np.zeros((43, 128), dtype=dtype)
    order = rng.permutation(1408)
    embedding_cpu.scatter_add(shuffled, ids[order], dout[order])
    if dtype == np.float32:  # the control: another order of the same additions rounds otherwise
        assert not np.array_equal(shuffled, want)


def test_the_embedding_module_takes_the_kernel_and_gives_the_references_gradient():
    pytest.importorskip("numba", reason="the fused CPU kernels need Numba (pip install numba)")
    from minis2s import dispatch, nn

    rng = np.random.default_rng(3)
    ids = rng.integers(0, 30, (11, 64))  # (T, B), repeats throughout
    dout = rng.standard_normal((11, 64, 16)).astype(np.float32)
    grads = {}
    for fast in (True, False):
        emb = nn.Embedding(30, 16, rng=np.random.default_rng(0))
        dispatch.set_enabled(fast)
        try:
            assert (dispatch.embedding_kernels(dout) is not None) == fast
            emb(ids)
            emb.backward(dout)
        finally:
            dispatch.set_enabled(None)
        grads[fast] = emb.weight.grad
    np.testing.assert_array_equal(grads[True], grads[False])
    assert dispatch.embedding_kernels(dout[:, ::2]) is None, "a strided gradient goes to np.add.at"
    emb = nn.Embedding(30, 16, rng=np.random.default_rng(0))
    emb(ids)
    with pytest.raises(ValueError, match="does not match ids"):  # fewer rows than ids: refused, not read past
        emb.backward(dout[:10].copy())
    assert dispatch.embedding_kernels(dout.astype(np.float16)) is None
