"""One harness for every LSTM kernel set against the float64 reference (minis2s.ops).

A kernel set (interface: kernels/cuda_host.py) is the CUDA C host twins through ctypes
(tests/test_cuda_c_host.py), the Numba CUDA kernels under the simulator
(tests/cudasim/test_numba_cuda_sim.py), or CUDA C / Numba on CuPy arrays (tests/test_gpu.py).
Each check draws float64 data that is exactly representable in ``dtype`` (drawn, cast down and
back up), so the kernel in ``dtype`` and the reference in float64 see identical inputs, and
compares every output with ``check_close``. ``xp`` is where the kernel's arrays live (numpy or
cupy).
"""
from functools import partial

import numpy as np
from conftest import check_close

from minis2s.kernels import lstm_cupy
from minis2s import ops
from minis2s.backend import to_numpy

# per-element math in float32: a few ulp (1.2e-7) of the largest value; float64: round-off only
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def draw(rng, dtype, shapes, scale=1.0):
    """float64 arrays whose values are exactly representable in ``dtype``."""
    return [(scale * rng.standard_normal(s)).astype(dtype).astype(np.float64) for s in shapes]


def check_all(ours: dict, ref: dict, tol):
    return {name: check_close(name, to_numpy(ours[name]), ref[name], tol) for name in ref}


def check_pointwise_forward(kernels, dtype, B, H, rng, xp=np):
    """minis2s.kernels.pointwise_forward vs ops.lstm_cell_forward: h, c, the activated gates, tanh(c)."""
    dtype = np.dtype(dtype)
    xg, hg, h_prev, c_prev = draw(rng, dtype, [(B, 4 * H), (B, 4 * H), (B, H), (B, H)], scale=2.0)
    (h_ref, c_ref), (i, f, g, o, _, tanh_ref) = ops.lstm_cell_forward(xg, hg, (h_prev, c_prev))
    out = {n: xp.empty((B, 4 * H) if n == "gates" else (B, H), dtype=dtype) for n in ("h", "c", "gates", "tanh_c")}
    dev = [xp.asarray(a.astype(dtype)) for a in (xg, hg, c_prev)]
    kernels.pointwise_forward(*dev, out["h"], out["c"], out["gates"], out["tanh_c"])
    ref = {"h": h_ref, "c": c_ref, "gates": np.concatenate([i, f, g, o], axis=1), "tanh_c": tanh_ref}
    return check_all(out, ref, TOL[dtype])


def check_pointwise_backward(kernels, dtype, B, H, rng, xp=np):
    """minis2s.kernels.pointwise_backward vs ops.lstm_cell_backward: da (B, 4H) and dc_prev."""
    dtype = np.dtype(dtype)
    xg, hg, h_prev, c_prev, dh, dc_next = draw(
        rng, dtype, [(B, 4 * H), (B, 4 * H), (B, H), (B, H), (B, H), (B, H)], scale=2.0)
    _, cache = ops.lstm_cell_forward(xg, hg, (h_prev, c_prev))
    cache = tuple(a.astype(dtype).astype(np.float64) for a in cache)  # what the kernel will read
    i, f, g, o, c_prev, tanh_c = cache
    da_ref, _, (_, dc_prev_ref) = ops.lstm_cell_backward((dh, dc_next), cache)
    gates = np.concatenate([i, f, g, o], axis=1)
    dev = [xp.asarray(a.astype(dtype)) for a in (dh, dc_next, gates, c_prev, tanh_c)]
    out = {"da": xp.empty((B, 4 * H), dtype=dtype), "dc_prev": xp.empty((B, H), dtype=dtype)}
    kernels.pointwise_backward(*dev, out["da"], out["dc_prev"])
    return check_all(out, {"da": da_ref, "dc_prev": dc_prev_ref}, TOL[dtype])


def check_sequence(kernels, dtype, T, B, I, H, rng, xp=np, lengths=None, upstream=("dout", "dh_n", "dc_n"),
                   tol=None, functions=None):
    """kernels/lstm_cupy.lstm_forward/lstm_backward with ``kernels`` vs ops.lstm_forward/backward;
    or, given ``functions`` = (lstm_forward, lstm_backward) with ops' signatures, those (the
    Numba CPU path, kernels/lstm_cpu.py; ``kernels`` is then unused).

    ``upstream`` names the gradients given to backward (the others are None), so the paths where
    the outputs or the final state get no gradient are covered too. Compares out, h_n, c_n and
    every gradient; returns {name: relative error}.
    """
    dtype = np.dtype(dtype)
    s = 1.0 / np.sqrt(H)
    x, h0, c0 = draw(rng, dtype, [(T, B, I), (B, H), (B, H)])
    w_ih, w_hh, b_ih, b_hh = draw(rng, dtype, [(4 * H, I), (4 * H, H), (4 * H,), (4 * H,)], scale=s)
    dout, dh_n, dc_n = draw(rng, dtype, [(T, B, H), (B, H), (B, H)])
    grads_in = {"dout": dout, "dh_n": dh_n, "dc_n": dc_n}
    grads_in = {k: (v if k in upstream else None) for k, v in grads_in.items()}
    params = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)

    out_r, (h_r, c_r), cache_r = ops.lstm_forward(*params, lengths=lengths)
    grads_r = ops.lstm_backward(grads_in["dout"], grads_in["dh_n"], grads_in["dc_n"], cache_r)

    dev = [xp.asarray(a.astype(dtype)) for a in params]
    if functions is None:
        functions = (partial(lstm_cupy.lstm_forward, kernels=kernels), lstm_cupy.lstm_backward)
    lstm_forward, lstm_backward = functions
    out, (h_n, c_n), cache = lstm_forward(*dev, lengths=lengths)
    g_dev = [None if v is None else xp.asarray(v.astype(dtype)) for v in grads_in.values()]
    grads = lstm_backward(*g_dev, cache)

    names = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")
    ours = {"out": out, "h_n": h_n, "c_n": c_n, **dict(zip(names, grads))}
    ref = {"out": out_r, "h_n": h_r, "c_n": c_r, **dict(zip(names, grads_r))}
    for name, a in ours.items():
        assert a.dtype == dtype, f"{name} came back as {a.dtype}, expected {dtype}"
    return check_all(ours, ref, TOL[dtype] if tol is None else tol)
