"""The one recurrence driver: every cell type (LSTM, GRU, tanh RNN), every implementation.

A recurrent layer (one direction) is GEMMs around a pointwise step:

    forward    xg = x W_ihᵀ                     one GEMM for all T steps   (T·B, I) x (I, G)
               for t = 0 .. T-1:
                   hg = h_{t-1} W_hhᵀ           one GEMM per step          (B, H) x (H, G)
                   forward_step(t, ...)         the cell's pointwise math: gates, state, output
    backward   for t = T-1 .. 0:
                   backward_step(t, ...)        dxg_t, dhg_t and the cell's carried gradient
                   dh_{t-1} = dhg_t W_hh        one GEMM per step
               weight_gradients: dW_ih = Σ_t dxg_tᵀ x_t, dW_hh = Σ_t dhg_tᵀ h_{t-1},
                                 dx = dxg W_ih                      three GEMMs over T·B rows

This file owns everything but the pointwise math: the GEMMs, the buffers, the time loop, the
padding rule, the cache and the weight gradients. A cell type (``CellType``, in ops/lstm.py,
gru.py, rnn.py) says which arrays its step reads and writes; an implementation (``Steps``) gives
the two step functions that plug in here:

    reference      beside each cell's math in ops/lstm.py, gru.py, rnn.py (NumPy or CuPy)
    CPU kernels    fused Numba steps, kernels/lstm_cpu.py and gru_cpu.py (their versions)
    GPU kernels    the CUDA C / Numba CUDA kernel sets, kernels/kernel_set.py

All of them fill the same ``RecurrentCache``, so a test compares them array by array and
minis2s.trace reads them one way. Step signatures (arrays are written in place):

    forward_step(t, hg, hs, xg, out, lengths, *biases, *saved)
        reads xg[t] (= x_t W_ihᵀ), hg (= h_{t-1} W_hhᵀ), hs[t] and the cell's saved state at t;
        writes the activated gates over xg[t], then hs[t+1], out[t] and the cell's arrays at t.
    backward_step(t, dh, dcarry, dh_n, dout, has_dout, dxg, dhg, lengths, hs, gates, *saved)
        dh (B, H) is dhg_{t+1} W_hh; dcarry (B, H) the cell's gradient carried from step t+1
        without a GEMM (LSTM: dc_t; GRU: dh_t ⊙ z_t; RNN: unused), updated in place; writes
        dxg[t] and dhg[t] (one array for the LSTM and the RNN, whose two are equal).

Shapes: T time, B batch, I input features, H hidden, G = gates·H. ``hs`` (T+1, B, H) holds
h_{-1} = h0, h_0, ..., h_{T-1}: hs[t] is the state step t reads, hs[T] the final one.

Padding (``lengths`` (B,)): steps t >= lengths[b] keep row b's state, emit zeros and get no
gradient, so each row's final state is its state at its own length (what PyTorch's
``pack_padded_sequence`` gives). In backward, row b's gradient of the final state (dh_n[b] and
the carried part) reaches its last real step t = lengths[b] - 1 untouched: the step reads
dh_n[b] there instead of dh[b].

Bidirectional layers (minis2s/nn/recurrent.py) run the reverse direction through this same
driver on ``reverse_time(x, reverse_time_index(T, B, lengths))``: each row reversed within its
own length, so the reverse direction starts at the row's last real step and its final state is
the one after step 0 (what PyTorch's packed bidirectional LSTM gives).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from minis2s.backend import array_module, to_numpy


def matmul_into(a, b, out):
    """out = a @ b, written in place (a (M, K), b (K, N), out (M, N))."""
    array_module(a).matmul(a, b, out=out)


def time_loops(forward_step, backward_step, matmul=matmul_into):
    """(forward_loop, backward_loop): the time loops around one implementation's steps.

        forward_loop(hs, w_hh_t, hg, gemm_rows, *args)   every t, n = gemm_rows[t]: hg[:n] = hs[t, :n] W_hhᵀ;
                                                         forward_step(t, hg, hs, *args)
        backward_loop(w_hh, dhg, dh, gemm_rows, *args)   every t from the last: backward_step(t, dh, *args);
                                                         dh[:n] = dhg[t, :n] W_hh (dh_{t-1} through the GEMM)

    ``gemm_rows`` (T,) from ``step_rows``: the GEMMs skip the rows after the last one with a step t
    (their hg and dh rows are left as they were: no step reads them). Run by Python, each step is
    one GEMM call and one step call. kernels/lstm_cpu.py compiles the same two loops whole with
    Numba (``matmul`` a direct cblas call: kernels/blas_cpu.py), so a sequence is one call."""

    def forward_loop(hs, w_hh_t, hg, gemm_rows, *args):
        for t in range(hs.shape[0] - 1):
            n = gemm_rows[t]
            matmul(hs[t, :n], w_hh_t, hg[:n])
            forward_step(t, hg, hs, *args)

    def backward_loop(w_hh, dhg, dh, gemm_rows, *args):
        for t in range(dhg.shape[0] - 1, -1, -1):
            backward_step(t, dh, *args)
            n = gemm_rows[t]
            matmul(dhg[t, :n], w_hh, dh[:n])

    return forward_loop, backward_loop


@dataclass(frozen=True)
class Steps:
    """One implementation of a cell type's pointwise step, and the time loops that run it
    (``time_loops`` by default; an implementation may bring its own: compiled, or one launch)."""

    name: str  # "reference", "cpu v2", "cuda_c", ...
    forward_step: Callable
    backward_step: Callable
    forward_loop: Callable
    backward_loop: Callable

    @classmethod
    def of(cls, name: str, forward_step, backward_step, loops=None) -> Steps:
        forward_loop, backward_loop = loops or time_loops(forward_step, backward_step)
        return cls(name, forward_step, backward_step, forward_loop, backward_loop)


@dataclass(frozen=True)
class CellType:
    """A recurrent cell type: its sizes, the arrays its steps use, and its math.

    forward(xg, hg, state) -> (new_state, cache) and backward(dnew_state, cache) -> (dxg, dhg,
    dstate_direct) are the cell's pointwise math on one step (cs231n's form: what the gradient
    checks and minis2s.trace use); ``reference`` runs that math as the driver's steps."""

    name: str  # "lstm", "gru", "rnn_tanh": the key of ops.CELLS and of model configs' ``cell``
    gates: int  # G = gates · H
    n_states: int  # 2 for the LSTM (h, c), 1 otherwise
    gate_names: tuple  # the named blocks of G, in PyTorch's order (the tanh RNN: none, its G is h)
    forward: Callable
    backward: Callable
    biases: Callable  # (b_ih, b_hh) -> the forward step's bias arguments
    saved: Callable  # (state0, T, B, H, dtype, xp) -> the cell's own arrays (their [0] set from state0)
    received: Callable  # (t, dh, dcarry, dh_n, dout, has_dout, lengths) -> the state gradients step t takes
    state0_gradient: Callable  # (dh, dcarry) after step 0 -> the gradient of state0, a tuple
    separate_dhg: bool  # dhg differs from dxg (the GRU's reset gate); else one array
    reference: Steps


class RecurrentCache(NamedTuple):
    """What every implementation keeps for backward: the same arrays, whoever made them."""

    cell: CellType
    steps: Steps  # the implementation that made it; its backward consumes it
    x: object  # (T, B, I), C-contiguous
    w_ih: object  # (G, I)
    w_hh: object  # (G, H)
    hs: object  # (T+1, B, H): h0, h_0, ..., h_{T-1} (padded rows carry their state)
    gates: object  # (T, B, G): the activated gates (rows of padded steps: undefined)
    saved: tuple  # the cell's own arrays (LSTM: cs (T+1, B, H), tanh_c (T, B, H); GRU: hg_n (T, B, H))
    lengths: object  # (B,) int64: every row T when there is no padding


def live_rows(t, lengths):
    """(B, 1) bool: the rows whose sequence has a step t; (B, 1) bool: those for which t is the last."""
    return (t < lengths)[:, None], (t == lengths - 1)[:, None]


def step_rows(lengths, T, B):
    """(T,) int64 on the host: rows[t] = 1 + the last row that has a step t (0 when none has).

    Why: rows past it are padded at step t, so the step's GEMM need not cover them. With the
    rows sorted by length, longest first (make_batches sorts a batch's columns by target length,
    the decoder's), rows[t] is the number of rows still running: a decoder's GEMMs then shrink
    as its rows finish, as PyTorch's PackedSequence does. Without padding: all B every step."""
    if lengths is None:
        return np.full(T, B, dtype=np.int64)
    running = np.arange(T)[:, None] < to_numpy(lengths)[None, :]  # (T, B)
    return np.where(running, np.arange(1, B + 1), 0).max(axis=1, initial=0).astype(np.int64)


def lengths_array(lengths, T, B, xp):
    """(B,) int64 lengths where the steps run (on the GPU for CuPy): all T without padding."""
    if lengths is None:
        return xp.full(B, T, dtype=xp.int64)
    return xp.asarray(lengths, dtype=xp.int64)


def recurrent_weight_t(w_hh, T, xp):
    """W_hhᵀ (H, G) for the per-step GEMM: a contiguous copy when the sequence has more than one
    step, the transposed view for one. OpenBLAS's small-GEMM kernels run faster on the contiguous
    operand (up to twice, measured: benchmarks/NOTES.md); the copy is one pass over W_hh, repaid
    by the second step. A decoder calling with T = 1 keeps the view."""
    return xp.ascontiguousarray(w_hh.T) if T > 1 else w_hh.T


def recurrent_forward(cell: CellType, x, state0, w_ih, w_hh, b_ih, b_hh, lengths=None, steps: Steps | None = None):
    """x: (T, B, I); state0: tuple of (B, H); w_ih: (G, I); w_hh: (G, H); b_ih, b_hh: (G,);
    lengths (B,) or None; steps: the implementation (default: the cell's reference).

    Returns out (T, B, H), state_n (tuple of (B, H)), cache.
    """
    xp = array_module(x)
    steps = steps or cell.reference
    T, B, I = x.shape
    G, H = w_hh.shape
    dt = x.dtype
    x = xp.ascontiguousarray(x)
    xg = xp.empty((T, B, G), dtype=dt)  # (T, B, G): x W_ihᵀ, then the activated gates
    matmul_into(x.reshape(T * B, I), w_ih.T, xg.reshape(T * B, G))  # every step's input: one GEMM
    hs = xp.empty((T + 1, B, H), dtype=dt)
    hs[0] = state0[0]
    saved = cell.saved(state0, T, B, H, dt, xp)
    out = xp.empty((T, B, H), dtype=dt)
    # (B, G): h_{t-1} W_hhᵀ, reused by every step; zeros, not empty: the rows a step's GEMM skips
    # (step_rows) keep what they held, and a reference step computes on them before discarding
    hg = xp.zeros((B, G), dtype=dt)
    lens = lengths_array(lengths, T, B, xp)
    steps.forward_loop(hs, recurrent_weight_t(w_hh, T, xp), hg, step_rows(lengths, T, B), xg, out, lens,
                       *cell.biases(b_ih, b_hh), *saved)
    state_n = (hs[T].copy(),) + tuple(s[T].copy() for s in saved[: cell.n_states - 1])
    return out, state_n, RecurrentCache(cell, steps, x, w_ih, w_hh, hs, xg, saved, lens)


def recurrent_backward(dout, dstate_n, cache: RecurrentCache):
    """dout: (T, B, H) or None (outputs unused); dstate_n: tuple of (B, H) or None entries.

    Returns dx (T, B, I), dstate0 (tuple of (B, H)), and (dw_ih, dw_hh, db_ih, db_hh).
    """
    cell, steps, x, w_ih, w_hh, hs, gates, saved, lens = cache
    xp = array_module(hs)
    T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    G, dt = gates.shape[2], hs.dtype
    has_dout = dout is not None
    dout = xp.ascontiguousarray(dout, dtype=dt) if has_dout else xp.zeros((1, 1, H), dtype=dt)
    dh_n = xp.zeros((B, H), dtype=dt) if dstate_n[0] is None else xp.ascontiguousarray(dstate_n[0], dtype=dt)
    dc_n = dstate_n[1] if cell.n_states == 2 else None
    dcarry = xp.zeros((B, H), dtype=dt) if dc_n is None else xp.array(dc_n, dtype=dt)  # own copy: updated
    dh = xp.zeros((B, H), dtype=dt)  # (B, H): dhg_{t+1} W_hh, reused by every step
    dxg = xp.empty((T, B, G), dtype=dt)
    dhg = xp.empty((T, B, G), dtype=dt) if cell.separate_dhg else dxg
    steps.backward_loop(w_hh, dhg, dh, step_rows(lens, T, B), dcarry, dh_n, dout, has_dout, dxg, dhg, lens, hs,
                        gates, *saved)
    dstate0 = cell.state0_gradient(dh, dcarry)
    empty = lens == 0  # rows with no step at all: the final state's gradient goes straight through
    if empty.any():
        dstate0[0][empty] = dh_n[empty]
    dx, dweights = weight_gradients(x, hs, w_ih, dxg, dhg, lens)
    return dx, dstate0, dweights


# Below this share of live (t, b) rows, weight_gradients gathers the live rows before its GEMMs.
# Measured (benchmarks/NOTES.md, 2026-12-04): a G2P decoder layer's three GEMMs at (T, B, G, H) =
# (11, 128, 1536, 384) with 69% of the rows live, one thread: 36 ms gathered against 50 over all
# rows; a gather is one pass over the rows, so with few padded rows it would cost more than it saves.
PACK_BELOW = 0.9


def weight_gradients(x, hs, w_ih, dxg, dhg, lengths=None):
    """After the time loop, three GEMMs over the T·B rows: x (T, B, I), hs (T+1, B, H), dxg and
    dhg (T, B, G) (possibly one array) -> dx (T, B, I), (dw_ih, dw_hh, db_ih, db_hh).

    dxg and dhg are zero on padded steps (t >= lengths[b]), so those rows add nothing: when
    fewer than PACK_BELOW of the rows are live, the GEMMs run on the live rows alone, gathered
    (PyTorch's PackedSequence keeps only those rows throughout), and dx is zero on the others."""
    xp = array_module(dxg)
    T, B, G = dxg.shape
    xs, hp = x.reshape(T * B, -1), hs[:T].reshape(T * B, -1)  # (T·B, I), (T·B, H)
    dxg2, dhg2 = dxg.reshape(T * B, G), dhg.reshape(T * B, G)  # (T·B, G)
    rows = None
    if lengths is not None:
        live = length_mask(lengths, T, bool, xp).reshape(-1)  # (T·B,)
        if int(live.sum()) < PACK_BELOW * T * B:
            rows = xp.flatnonzero(live)  # (N,): the live rows, in order
            xs, hp, dxg2 = xs.take(rows, axis=0), hp.take(rows, axis=0), dxg2.take(rows, axis=0)
            dhg2 = dxg2 if dhg is dxg else dhg2.take(rows, axis=0)
    dw_ih = dxg2.T @ xs  # (G, I) = Σ_t dxg_tᵀ x_t
    dw_hh = dhg2.T @ hp  # (G, H) = Σ_t dhg_tᵀ h_{t-1}
    db_ih = dxg2.sum(axis=0)
    db_hh = db_ih.copy() if dhg is dxg else dhg2.sum(axis=0)
    if rows is None:
        dx = (dxg2 @ w_ih).reshape(T, B, -1)  # (T, B, I)
    else:
        dx = xp.zeros((T * B, w_ih.shape[1]), dtype=dxg.dtype)
        dx[rows] = dxg2 @ w_ih
        dx = dx.reshape(T, B, -1)
    return dx, (dw_ih, dw_hh, db_ih, db_hh)


def length_mask(lengths, T, dtype, xp):
    """lengths (B,) -> float mask (T, B, 1), 1 where t < lengths[b]."""
    return (xp.arange(T)[:, None] < xp.asarray(lengths)[None, :]).astype(dtype)[:, :, None]


def reverse_time_index(T, B, lengths, xp):
    """(T, B) int index that reverses every row within its own length; padded steps stay put.

    idx[t, b] = lengths[b] - 1 - t  for t < lengths[b],  else t     (all rows T - 1 - t without
    lengths). It is a permutation of each column and its own inverse, so the same gather undoes it.
    """
    t = xp.arange(T)[:, None]  # (T, 1)
    if lengths is None:
        return xp.broadcast_to(T - 1 - t, (T, B))
    n = xp.asarray(lengths)[None, :]  # (1, B)
    return xp.where(t < n, n - 1 - t, t)


def reverse_time(a, index):
    """a: (T, B, F), index: (T, B) from reverse_time_index -> a[index[t, b], b] (T, B, F), a copy.

    Its gradient is the same gather (the index is its own inverse): d_a = reverse_time(d_out, index).
    """
    xp = array_module(a)
    return a[index, xp.arange(a.shape[1])[None, :]]


def recurrent_step_forward(cell: CellType, x, state, w_ih, w_hh, b_ih, b_hh):
    """One time step (cs231n's step functions): x (B, I) -> new state (tuple of (B, H)), cache."""
    _, new, cache = recurrent_forward(cell, x[None], state, w_ih, w_hh, b_ih, b_hh)
    return new, cache


def recurrent_step_backward(dnew_state, cache):
    """dnew_state: tuple of (B, H) -> dx (B, I), dstate_prev, (dw_ih, dw_hh, db_ih, db_hh)."""
    dx, dstate, dparams = recurrent_backward(None, dnew_state, cache)
    return dx[0], dstate, dparams


def single_state_step_forward(cell: CellType, x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """One step of a cell whose state is h alone (GRU, RNN): x (B, I), h_prev (B, H) -> h, cache."""
    (h,), cache = recurrent_step_forward(cell, x, (h_prev,), w_ih, w_hh, b_ih, b_hh)
    return h, cache


def single_state_step_backward(dh, cache):
    """dh: (B, H) -> dx, dh_prev, dw_ih, dw_hh, db_ih, db_hh."""
    dx, (dh_prev,), dparams = recurrent_step_backward((dh,), cache)
    return (dx, dh_prev) + tuple(dparams)
