"""One recurrence driver shared by LSTM, GRU and the tanh RNN (one direction, one layer).

A recurrent layer splits into two parts:

* GEMMs, identical for every cell type: the input projection ``xg = x W_ihᵀ + b_ih`` for all
  time steps at once (one (T·B, I) x (I, G) GEMM), and per step the recurrent projection
  ``hg = h_{t-1} W_hhᵀ + b_hh``;
* the cell's pointwise part, ``cell.forward(xg_t, hg_t, state_{t-1}) -> state_t`` (the gate
  nonlinearities: ``minis2s/ops/lstm.py``, ``gru.py``, ``rnn.py``).

Backward runs the cell's pointwise backward per step, pushes ``dhg_t W_hh`` into ``dh_{t-1}``,
and after the loop forms the weight gradients as three GEMMs over the whole sequence:
``dW_ih = Σ_t dxg_tᵀ x_t``, ``dW_hh = Σ_t dhg_tᵀ h_{t-1}``, ``dx = dxg W_ih``.

Padding: with ``lengths`` (B,), steps ``t >= lengths[b]`` leave row b's state unchanged and emit
zeros, so the final state of each row is its state at its own length (what PyTorch's
``pack_padded_sequence`` gives) and padded steps get no gradient.

State is a tuple: ``(h, c)`` for the LSTM, ``(h,)`` for GRU and RNN; ``state[0]`` is the output.

Bidirectional layers (minis2s/nn/recurrent.py) run the reverse direction through this same
driver on ``reverse_time(x, reverse_time_index(T, B, lengths))``: each row reversed within its
own length, so the reverse direction starts at the row's last real step and its final state is
the one after step 0 (what PyTorch's packed bidirectional LSTM gives).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from minis2s.backend import array_module


@dataclass(frozen=True)
class Cell:
    """The pointwise part of a recurrent cell.

    forward(xg, hg, state) -> (new_state, cache); xg, hg: (B, G); state: tuple of (B, H).
    backward(dnew_state, cache) -> (dxg, dhg, dstate_direct): dstate_direct is the gradient
    reaching the previous state through the pointwise math alone (entries may be None for 0).
    """

    name: str
    gates: int  # G = gates * H
    n_states: int  # 2 for the LSTM (h, c), 1 otherwise
    forward: Callable
    backward: Callable


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


def recurrent_forward(cell: Cell, x, state0, w_ih, w_hh, b_ih, b_hh, lengths=None):
    """x: (T, B, I); state0: tuple of (B, H); w_ih: (G, I); w_hh: (G, H); b_ih, b_hh: (G,).

    Returns out (T, B, H), state_n (tuple of (B, H)), cache.
    """
    xp = array_module(x)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    xg = x @ w_ih.T + b_ih  # (T, B, G): the input projection of every step as one GEMM
    mask = None if lengths is None else length_mask(lengths, T, x.dtype, xp)  # (T, B, 1)
    out = xp.empty((T, B, H), dtype=x.dtype)  # (T, B, H)
    h_prev = xp.empty((T, B, H), dtype=x.dtype)  # (T, B, H): h_{t-1}, for dW_hh
    hg = xp.empty((T, B, w_hh.shape[0]), dtype=x.dtype)  # (T, B, G): needed by the GRU
    steps = []
    state = tuple(state0)
    for t in range(T):
        h_prev[t] = state[0]
        hg[t] = state[0] @ w_hh.T + b_hh  # (B, G)
        new, step_cache = cell.forward(xg[t], hg[t], state)
        if mask is not None:  # padded rows keep their state: s_t = m·s_new + (1-m)·s_{t-1}
            m = mask[t]
            new = tuple(m * n + (1.0 - m) * s for n, s in zip(new, state))
            out[t] = m * new[0]
        else:
            out[t] = new[0]
        steps.append(step_cache)
        state = new
    cache = (cell, x, w_ih, w_hh, h_prev, hg, mask, steps)
    return out, state, cache


def recurrent_backward(dout, dstate_n, cache):
    """dout: (T, B, H) or None (outputs unused); dstate_n: tuple of (B, H) or None entries.

    Returns dx (T, B, I), dstate0 (tuple of (B, H)), and (dw_ih, dw_hh, db_ih, db_hh).
    """
    cell, x, w_ih, w_hh, h_prev, hg, mask, steps = cache
    xp = array_module(h_prev)
    if dout is None:
        dout = xp.zeros_like(h_prev)
    T, B, H = dout.shape
    dstate = tuple(
        xp.zeros((B, H), dtype=dout.dtype) if d is None else d for d in dstate_n
    )
    dxg = xp.empty(hg.shape, dtype=dout.dtype)  # (T, B, G)
    dhg = xp.empty(hg.shape, dtype=dout.dtype)  # (T, B, G)
    for t in reversed(range(T)):
        # The output and the carried state both read h_t.
        dnew = (dstate[0] + dout[t],) + dstate[1:]
        if mask is not None:  # split the gradient between the new state and the carried one
            m = mask[t]
            carried = tuple((1.0 - m) * d for d in dstate)
            dnew = tuple(m * d for d in dnew)
        dxg[t], dhg[t], ddirect = cell.backward(dnew, steps[t])
        dh = dhg[t] @ w_hh  # (B, H): through the recurrent GEMM
        dstate = (dh,) + tuple(xp.zeros_like(dh) for _ in dstate[1:])
        dstate = tuple(d if dd is None else d + dd for d, dd in zip(dstate, ddirect))
        if mask is not None:
            dstate = tuple(d + c for d, c in zip(dstate, carried))
    G = hg.shape[2]
    dxg2 = dxg.reshape(-1, G)  # (T·B, G)
    dhg2 = dhg.reshape(-1, G)  # (T·B, G)
    dw_ih = dxg2.T @ x.reshape(-1, x.shape[2])  # (G, I): one GEMM over the sequence
    dw_hh = dhg2.T @ h_prev.reshape(-1, H)  # (G, H): one GEMM over the sequence
    db_ih = dxg2.sum(axis=0)
    db_hh = dhg2.sum(axis=0)
    dx = dxg @ w_ih  # (T, B, I)
    return dx, dstate, (dw_ih, dw_hh, db_ih, db_hh)


def recurrent_step_forward(cell: Cell, x, state, w_ih, w_hh, b_ih, b_hh):
    """One time step: x (B, I) -> new state (tuple of (B, H)), cache."""
    _, new, cache = recurrent_forward(cell, x[None], state, w_ih, w_hh, b_ih, b_hh)
    return new, cache


def recurrent_step_backward(dnew_state, cache):
    """dnew_state: tuple of (B, H) -> dx (B, I), dstate_prev, (dw_ih, dw_hh, db_ih, db_hh)."""
    xp = array_module(dnew_state[0])
    dout = xp.zeros_like(dnew_state[0])[None]
    dx, dstate, dparams = recurrent_backward(dout, dnew_state, cache)
    return dx[0], dstate, dparams
