"""One harness for every implementation of the recurrence, against the float64 reference.

llm.c keeps each CUDA kernel beside the code that checks it; here every implementation of the
driver's steps (``ops.Steps``: kernels/lstm_cpu.py and gru_cpu.py's versions, a CUDA kernel
set through kernels/kernel_set.py) is checked by the same two kinds of check:

    check_steps(cell, steps, dtype, ...)     a whole sequence forward and backward through
                                             ``ops.recurrent_forward/backward`` with ``steps``,
                                             against the cell's reference steps in float64:
                                             outputs, final states, every gradient, and the
                                             cache (one layout for all implementations)
    check_pointwise_forward/backward(kernels, dtype, B, H)
                                             one pointwise launch of a kernel set against
                                             ``ops.lstm_cell_forward/backward``

Data is float64 drawn to be exactly representable in ``dtype`` (drawn, cast down and back up),
so the implementation in ``dtype`` and the reference in float64 see identical inputs; the bound
is ``minis2s.tolerances.KERNEL[dtype]``. ``xp`` is where the implementation's arrays live
(numpy or cupy). Used by tests/test_kernels_cpu.py, test_cuda_c_host.py, tests/cudasim and
test_gpu.py.
"""
from __future__ import annotations

import numpy as np

from minis2s import ops
from minis2s.backend import to_numpy
from minis2s.gradcheck import check_close
from minis2s.tolerances import KERNEL

STATE_NAMES = ("h", "c")


def draw(rng, dtype, shapes, scale=1.0):
    """float64 arrays whose values are exactly representable in ``dtype``."""
    return [(scale * rng.standard_normal(s)).astype(dtype).astype(np.float64) for s in shapes]


def check_all(ours: dict, ref: dict, tol) -> dict:
    """{name: relative error}, each within ``tol`` (else an AssertionError naming it)."""
    return {name: check_close(name, to_numpy(ours[name]), ref[name], tol) for name in ref}


def _cache_arrays(cache, lengths_live) -> dict:
    """The cache's arrays by name; per-step arrays (T first) zeroed where the step did not run
    (padded rows: an implementation may leave them unwritten), state sequences (T+1) whole."""
    T = cache.hs.shape[0] - 1
    arrays = {"cache.hs": cache.hs, "cache.gates": cache.gates,
              **{f"cache.saved[{k}]": a for k, a in enumerate(cache.saved)}}
    out = {}
    for name, a in arrays.items():
        a = to_numpy(a)
        if a.shape[0] == T:  # zero the unwritten rows before any cast: they may hold any bits
            a = np.where(lengths_live, a, a.dtype.type(0))
        out[name] = a.astype(np.float64)
    return out


def check_steps(cell, steps, dtype, T, B, I, H, rng, *, xp=np, lengths=None, upstream=None, tol=None) -> dict:
    """``steps`` (an implementation of ``cell``, e.g. ops.LSTM_CELL) on ``dtype`` arrays in
    ``xp`` against ``cell.reference`` in float64, over one sequence (T, B, I) -> H.

    ``upstream`` names the gradients backward is given, among "dout", "dh_n" and (LSTM) "dc_n"
    (default: all; the others are None), so the cases where the outputs or the final state get
    no gradient are covered too. Returns {name: relative error}.
    """
    dtype = np.dtype(dtype)
    G, n = cell.gates * H, cell.n_states
    x, *state0 = draw(rng, dtype, [(T, B, I)] + [(B, H)] * n)
    w = draw(rng, dtype, [(G, I), (G, H), (G,), (G,)], scale=1.0 / np.sqrt(H))
    dout, *dstate = draw(rng, dtype, [(T, B, H)] + [(B, H)] * n)
    grad_names = tuple(f"d{s}_n" for s in STATE_NAMES[:n])
    upstream = ("dout",) + grad_names if upstream is None else tuple(upstream)
    dout = dout if "dout" in upstream else None
    dstate = tuple(d if name in upstream else None for name, d in zip(grad_names, dstate))

    out_r, sn_r, cache_r = ops.recurrent_forward(cell, x, tuple(state0), *w, lengths=lengths)
    dx_r, ds0_r, dw_r = ops.recurrent_backward(dout, dstate, cache_r)

    def dev(a):
        return None if a is None else xp.asarray(a.astype(dtype))

    out, sn, cache = ops.recurrent_forward(cell, dev(x), tuple(map(dev, state0)), *map(dev, w), lengths=lengths,
                                           steps=steps)
    assert cache.steps is steps, f"the cache names {cache.steps.name!r}, not the steps that ran ({steps.name!r})"
    dx, ds0, dw = ops.recurrent_backward(dev(dout), tuple(map(dev, dstate)), cache)

    lens = np.full(B, T) if lengths is None else np.asarray(lengths)
    live = (np.arange(T)[:, None] < lens[None, :])[:, :, None]  # (T, B, 1)
    weight_names = ("dw_ih", "dw_hh", "db_ih", "db_hh")

    def named(out_, sn_, dx_, ds0_, dw_, cache_):
        return {"out": out_, **{f"{s}_n": a for s, a in zip(STATE_NAMES, sn_)}, "dx": dx_,
                **{f"d{s}0": a for s, a in zip(STATE_NAMES, ds0_)}, **dict(zip(weight_names, dw_)),
                **_cache_arrays(cache_, live)}

    ours = named(out, sn, dx, ds0, dw, cache)
    ref = named(out_r, sn_r, dx_r, ds0_r, dw_r, cache_r)
    for name, a in ours.items():
        if not name.startswith("cache."):
            assert a.dtype == dtype, f"{name} came back as {a.dtype}, expected {dtype}"
    return check_all(ours, ref, KERNEL[dtype] if tol is None else tol)


def check_pointwise_forward(kernels, dtype, B, H, rng, xp=np) -> dict:
    """A kernel set's pointwise_forward vs ops.lstm_cell_forward: h, c, the gates, tanh(c)."""
    dtype = np.dtype(dtype)
    xg, hg, h_prev, c_prev = draw(rng, dtype, [(B, 4 * H), (B, 4 * H), (B, H), (B, H)], scale=2.0)
    (h_ref, c_ref), (i, f, g, o, _, tanh_ref) = ops.lstm_cell_forward(xg, hg, (h_prev, c_prev))
    out = {n: xp.empty((B, 4 * H) if n == "gates" else (B, H), dtype=dtype) for n in ("h", "c", "gates", "tanh_c")}
    dev = [xp.asarray(a.astype(dtype)) for a in (xg, hg, c_prev)]
    kernels.pointwise_forward(*dev, out["h"], out["c"], out["gates"], out["tanh_c"])
    ref = {"h": h_ref, "c": c_ref, "gates": np.concatenate([i, f, g, o], axis=1), "tanh_c": tanh_ref}
    return check_all(out, ref, KERNEL[dtype])


def check_pointwise_backward(kernels, dtype, B, H, rng, xp=np) -> dict:
    """A kernel set's pointwise_backward vs ops.lstm_cell_backward: da (B, 4H) and dc_prev."""
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
    return check_all(out, {"da": da_ref, "dc_prev": dc_prev_ref}, KERNEL[dtype])


def check_kernel_set(kernels, dtype, T, B, I, H, rng, **kw) -> dict:
    """``check_steps`` for the LSTM steps of a CUDA kernel set (kernels/kernel_set.py)."""
    from minis2s.kernels.kernel_set import kernel_set_steps

    return check_steps(ops.LSTM_CELL, kernel_set_steps(kernels), dtype, T, B, I, H, rng, **kw)


def report(cell_name: str, versions: dict) -> None:
    """``python -m minis2s.kernels.lstm_cpu`` (or gru_cpu): every version (``{n: Steps}``) against
    the reference, as llm.c's dev/cuda files validate each kernel before timing it; prints the
    worst error per version and dtype, and raises AssertionError on a mismatch."""
    cell = ops.CELLS[cell_name]
    shapes = [(5, 3, 4, 7, None), (6, 5, 3, 17, [6, 2, 1, 4, 6]), (4, 3, 2, 5, [4, 0, 2]), (32, 16, 128, 128, None)]
    for steps in versions.values():
        for dtype in (np.float64, np.float32):
            worst = max(max(check_steps(cell, steps, dtype, T, B, I, H, np.random.default_rng(0),
                                        lengths=lengths).values())
                        for T, B, I, H, lengths in shapes)
            print(f"{cell_name} {steps.name} {np.dtype(dtype).name}: max relative error {worst:.1e} "
                  f"(bound {KERNEL[np.dtype(dtype)]:.0e}, {len(shapes)} shapes)")
