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

The GEMMs around it, the time loop, padding and the weight gradients are in recurrent.py,
shared with the GRU and the tanh RNN.
"""
from minis2s.backend import array_module
from minis2s.ops.activations import sigmoid
from minis2s.ops.recurrent import (
    Cell,
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


LSTM_CELL = Cell("lstm", 4, 2, lstm_cell_forward, lstm_cell_backward)


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None):
    """x: (T, B, I), h0/c0: (B, H), w_ih: (4H, I), w_hh: (4H, H), b_ih/b_hh: (4H,).

    Returns out (T, B, H), (h_n, c_n), cache.
    """
    out, (h, c), cache = recurrent_forward(LSTM_CELL, x, (h0, c0), w_ih, w_hh, b_ih, b_hh, lengths)
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
