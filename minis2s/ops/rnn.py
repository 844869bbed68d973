"""The Elman RNN with tanh, PyTorch's nn.RNN(nonlinearity='tanh').

    h_t = tanh(x W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)
    da = dh_t ⊙ (1 - h_t²);   dh_{t-1} = da W_hh   (added by the driver)
"""
from minis2s.backend import array_module
from minis2s.ops.recurrent import (
    CellType,
    Steps,
    live_rows,
    single_state_step_backward,
    single_state_step_forward,
)


def rnn_cell_forward(xg, hg, state):
    """xg, hg: (B, H) -> ((h_t,), cache)."""
    h = array_module(xg).tanh(xg + hg)
    return (h,), h


def rnn_cell_backward(dstate, cache):
    h = cache
    da = dstate[0] * (1.0 - h * h)  # (B, H)
    return da, da, (None,)


def rnn_forward_step(t, hg, hs, xg, out, lengths, bias):
    """Step t (the driver's reference step): xg[t] = x_t W_ihᵀ, overwritten with h_t itself."""
    xp = array_module(hg)
    live, _ = live_rows(t, lengths)
    (h,), _ = rnn_cell_forward(xg[t] + bias, hg, (hs[t],))
    xg[t] = h
    hs[t + 1] = xp.where(live, h, hs[t])
    out[t] = xp.where(live, h, 0.0)


def rnn_received(t, dh, _dcarry, dh_n, dout, has_dout, lengths):
    """(dh_t,): the GEMM's part (dh_n at a row's last step) plus the output's; 0 on padded rows."""
    xp = array_module(dh)
    live, last = live_rows(t, lengths)
    d = xp.where(last, dh_n, dh)
    if has_dout:
        d = d + dout[t]
    return (xp.where(live, d, 0.0),)


def rnn_backward_step(t, dh, dcarry, dh_n, dout, has_dout, da, _dhg, lengths, hs, gates):
    """Step t: writes da[t] (B, H), both dxg_t and dhg_t."""
    da[t], _, _ = rnn_cell_backward(rnn_received(t, dh, dcarry, dh_n, dout, has_dout, lengths), gates[t])


RNN_CELL = CellType(
    "rnn_tanh", 1, 1, (), rnn_cell_forward, rnn_cell_backward,
    biases=lambda b_ih, b_hh: (b_ih + b_hh,),
    saved=lambda state0, T, B, H, dtype, xp: (),
    received=rnn_received,
    state0_gradient=lambda dh, _dcarry: (dh,),
    separate_dhg=False,
    reference=Steps.of("reference", rnn_forward_step, rnn_backward_step),
)


def rnn_step_forward(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """x: (B, I), h_prev: (B, H), w_ih: (H, I), w_hh: (H, H) -> h (B, H), cache."""
    return single_state_step_forward(RNN_CELL, x, h_prev, w_ih, w_hh, b_ih, b_hh)


rnn_step_backward = single_state_step_backward  # dh (B, H) -> dx, dh_prev, dw_ih, dw_hh, db_ih, db_hh
