"""The Elman RNN with tanh, PyTorch's nn.RNN(nonlinearity='tanh').

    h_t = tanh(x W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)
    da = dh_t ⊙ (1 - h_t²);   dh_{t-1} = da W_hh   (added by the driver)
"""
from minis2s.backend import array_module
from minis2s.ops.recurrent import (
    Cell,
    recurrent_step_backward,
    recurrent_step_forward,
)


def rnn_cell_forward(xg, hg, state):
    """xg, hg: (B, H) -> ((h_t,), cache)."""
    h = array_module(xg).tanh(xg + hg)
    return (h,), h


def rnn_cell_backward(dstate, cache):
    h = cache
    da = dstate[0] * (1.0 - h * h)  # (B, H)
    return da, da, (None,)


RNN_CELL = Cell("rnn_tanh", 1, 1, rnn_cell_forward, rnn_cell_backward)


def rnn_step_forward(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """x: (B, I), h_prev: (B, H), w_ih: (H, I), w_hh: (H, H) -> h (B, H), cache."""
    (h,), cache = recurrent_step_forward(RNN_CELL, x, (h_prev,), w_ih, w_hh, b_ih, b_hh)
    return h, cache


def rnn_step_backward(dh, cache):
    """dh: (B, H) -> dx, dh_prev, dw_ih, dw_hh, db_ih, db_hh."""
    dx, (dh_prev,), dparams = recurrent_step_backward((dh,), cache)
    return (dx, dh_prev) + tuple(dparams)
