"""The LSTM, PyTorch's formulation and gate order (i, f, g, o).

    a   = x W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh          (B, 4H)
    i, f, o = σ(a_i), σ(a_f), σ(a_o);   g = tanh(a_g)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)

Backward of the pointwise part, given dh_t (from the output and from step t+1) and dc_t (from
step t+1):

    dc   = dc_t + dh_t ⊙ o ⊙ (1 - tanh²(c_t))            (c_t reaches h_t through tanh)
    do   = dh_t ⊙ tanh(c_t)          da_o = do ⊙ o(1-o)
    di   = dc ⊙ g                    da_i = di ⊙ i(1-i)
    df   = dc ⊙ c_{t-1}              da_f = df ⊙ f(1-f)
    dg   = dc ⊙ i                    da_g = dg ⊙ (1-g²)
    dc_{t-1} = dc ⊙ f
    dh_{t-1} = da W_hh               (added by the driver in recurrent.py)

The GEMMs around it, the time loop, padding and the weight gradients are the one driver in
recurrent.py, shared with the GRU, the tanh RNN and every fast kernel.
"""
from minis2s.backend import array_module
from minis2s.ops.activations import sigmoid
from minis2s.ops.recurrent import (
    CellType,
    Steps,
    live_rows,
    recurrent_backward,
    recurrent_forward,
    recurrent_step_backward,
    recurrent_step_forward,
)


def lstm_cell_forward(xg, hg, state):
    """xg, hg: (B, 4H) projections of x and h_{t-1}; state: (h_{t-1}, c_{t-1}) each (B, H).

    Returns ((h_t, c_t), cache).
    """
    xp = array_module(xg)
    _, c_prev = state
    a = xg + hg  # (B, 4H)
    H = a.shape[1] // 4
    i = sigmoid(a[:, :H])  # (B, H)
    f = sigmoid(a[:, H : 2 * H])
    g = xp.tanh(a[:, 2 * H : 3 * H])
    o = sigmoid(a[:, 3 * H :])
    c = f * c_prev + i * g  # (B, H)
    tanh_c = xp.tanh(c)
    h = o * tanh_c  # (B, H)
    return (h, c), (i, f, g, o, c_prev, tanh_c)


def lstm_cell_backward(dstate, cache):
    """dstate: (dh_t, dc_t) -> (da, da, (None, dc_{t-1})): xg and hg get the same gradient."""
    xp = array_module(dstate[0])
    dh, dc_next = dstate
    i, f, g, o, c_prev, tanh_c = cache
    dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)  # (B, H)
    da = xp.concatenate(
        [
            dc * g * i * (1.0 - i),  # da_i
            dc * c_prev * f * (1.0 - f),  # da_f
            dc * i * (1.0 - g * g),  # da_g
            dh * tanh_c * o * (1.0 - o),  # da_o
        ],
        axis=1,
    )  # (B, 4H)
    return da, da, (None, dc * f)


# ---- the reference steps: the math above as the driver's steps (minis2s/ops/recurrent.py) -----
# The fused kernels (kernels/lstm_cpu.py, kernels/kernel_set.py) take these same arguments.


def lstm_forward_step(t, hg, hs, xg, out, lengths, bias, cs, tanh_c):
    """Step t: xg[t] (B, 4H) = x_t W_ihᵀ, overwritten with the gates i, f, g, o; hg (B, 4H) =
    h_{t-1} W_hhᵀ; bias (4H,) = b_ih + b_hh; writes hs[t+1], cs[t+1], tanh_c[t], out[t]."""
    xp = array_module(hg)
    live, _ = live_rows(t, lengths)  # (B, 1): padded rows keep their state and emit 0
    (h, c), (i, f, g, o, _, tc) = lstm_cell_forward(xg[t] + bias, hg, (hs[t], cs[t]))
    xg[t] = xp.concatenate([i, f, g, o], axis=1)
    tanh_c[t] = tc
    hs[t + 1] = xp.where(live, h, hs[t])
    cs[t + 1] = xp.where(live, c, cs[t])
    out[t] = xp.where(live, h, 0.0)


def lstm_received(t, dh, dc, dh_n, dout, has_dout, lengths):
    """(dh_t, dc_t), the gradients step t's pointwise backward takes: the output's and the
    carried state's (dh_n at a row's last step), zero on padded rows."""
    xp = array_module(dh)
    live, last = live_rows(t, lengths)
    d_h = xp.where(last, dh_n, dh)
    if has_dout:
        d_h = d_h + dout[t]
    return xp.where(live, d_h, 0.0), xp.where(live, dc, 0.0)


def lstm_backward_step(t, dh, dc, dh_n, dout, has_dout, da, _dhg, lengths, hs, gates, cs, tanh_c):
    """Step t: dc (B, H) dc_t in, dc_{t-1} out (padded rows: unchanged); writes da[t] (B, 4H),
    which is both dxg_t and dhg_t."""
    xp = array_module(dh)
    H = dh.shape[1]
    live, _ = live_rows(t, lengths)
    a = gates[t]  # (B, 4H)
    step = (a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :], cs[t], tanh_c[t])
    da_t, _, (_, dc_prev) = lstm_cell_backward(lstm_received(t, dh, dc, dh_n, dout, has_dout, lengths), step)
    da[t] = xp.where(live, da_t, 0.0)
    dc[...] = xp.where(live, dc_prev, dc)


def _lstm_saved(state0, T, B, H, dtype, xp):
    """cs (T+1, B, H) with cs[0] = c0, and tanh_c (T, B, H)."""
    cs = xp.empty((T + 1, B, H), dtype=dtype)
    cs[0] = state0[1]
    return cs, xp.empty((T, B, H), dtype=dtype)


LSTM_CELL = CellType(
    "lstm", 4, 2, ("i", "f", "g", "o"), lstm_cell_forward, lstm_cell_backward,
    biases=lambda b_ih, b_hh: (b_ih + b_hh,),  # one sum: the gates read x and h the same way
    saved=_lstm_saved, received=lstm_received,
    state0_gradient=lambda dh, dc: (dh, dc),
    separate_dhg=False,
    reference=Steps.of("reference", lstm_forward_step, lstm_backward_step),
)


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, steps=None):
    """x: (T, B, I), h0/c0: (B, H), w_ih: (4H, I), w_hh: (4H, H), b_ih/b_hh: (4H,);
    steps: an implementation (default: the reference; kernels/lstm_cpu.py's ``VERSIONS``).

    Returns out (T, B, H), (h_n, c_n), cache.
    """
    out, (h, c), cache = recurrent_forward(LSTM_CELL, x, (h0, c0), w_ih, w_hh, b_ih, b_hh, lengths, steps)
    return out, (h, c), cache


def lstm_backward(dout, dh_n, dc_n, cache):
    """dout: (T, B, H); dh_n, dc_n: (B, H) or None.

    Returns dx (T, B, I), dh0, dc0 (B, H), dw_ih, dw_hh, db_ih, db_hh.
    """
    dx, (dh0, dc0), dparams = recurrent_backward(dout, (dh_n, dc_n), cache)
    return (dx, dh0, dc0) + tuple(dparams)


def lstm_step_forward(x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh):
    """x: (B, I), h_prev/c_prev: (B, H) -> h, c (B, H), cache (cs231n's signature)."""
    (h, c), cache = recurrent_step_forward(LSTM_CELL, x, (h_prev, c_prev), w_ih, w_hh, b_ih, b_hh)
    return h, c, cache


def lstm_step_backward(dh, dc, cache):
    """dh, dc: (B, H) -> dx, dh_prev, dc_prev, dw_ih, dw_hh, db_ih, db_hh."""
    dx, (dh_prev, dc_prev), dparams = recurrent_step_backward((dh, dc), cache)
    return (dx, dh_prev, dc_prev) + tuple(dparams)
