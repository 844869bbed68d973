"""The GRU, PyTorch's formulation and gate order (r, z, n).

    r = σ(xg_r + hg_r)          z = σ(xg_z + hg_z)          (xg = x W_ihᵀ + b_ih, hg = h W_hhᵀ + b_hh)
    n = tanh(xg_n + r ⊙ hg_n)   (the reset gate scales the recurrent part *after* its bias)
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

Backward:
    dn = dh ⊙ (1 - z)           da_n = dn ⊙ (1 - n²)
    dz = dh ⊙ (h_{t-1} - n)     da_z = dz ⊙ z(1-z)
    dr = da_n ⊙ hg_n            da_r = dr ⊙ r(1-r)
    dxg = [da_r, da_z, da_n];   dhg = [da_r, da_z, da_n ⊙ r];   dh_{t-1} = dh ⊙ z + dhg W_hh
"""
from minis2s.backend import array_module
from minis2s.ops.activations import sigmoid
from minis2s.ops.recurrent import (
    Cell,
    recurrent_step_backward,
    recurrent_step_forward,
)


def gru_cell_forward(xg, hg, state):
    """xg, hg: (B, 3H); state: (h_{t-1},) -> ((h_t,), cache)."""
    xp = array_module(xg)
    (h_prev,) = state
    H = xg.shape[1] // 3
    r = sigmoid(xg[:, :H] + hg[:, :H])  # (B, H)
    z = sigmoid(xg[:, H : 2 * H] + hg[:, H : 2 * H])
    hg_n = hg[:, 2 * H :]
    n = xp.tanh(xg[:, 2 * H :] + r * hg_n)
    h = (1.0 - z) * n + z * h_prev
    return (h,), (r, z, n, hg_n, h_prev)


def gru_cell_backward(dstate, cache):
    """dstate: (dh_t,) -> dxg (B, 3H), dhg (B, 3H), (dh_{t-1} through the pointwise part,)."""
    xp = array_module(dstate[0])
    (dh,) = dstate
    r, z, n, hg_n, h_prev = cache
    da_n = dh * (1.0 - z) * (1.0 - n * n)  # (B, H)
    da_z = dh * (h_prev - n) * z * (1.0 - z)
    da_r = da_n * hg_n * r * (1.0 - r)
    dxg = xp.concatenate([da_r, da_z, da_n], axis=1)  # (B, 3H)
    dhg = xp.concatenate([da_r, da_z, da_n * r], axis=1)  # (B, 3H)
    return dxg, dhg, (dh * z,)


GRU_CELL = Cell("gru", 3, 1, gru_cell_forward, gru_cell_backward)


def gru_step_forward(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """x: (B, I), h_prev: (B, H), w_ih: (3H, I), w_hh: (3H, H) -> h (B, H), cache."""
    (h,), cache = recurrent_step_forward(GRU_CELL, x, (h_prev,), w_ih, w_hh, b_ih, b_hh)
    return h, cache


def gru_step_backward(dh, cache):
    """dh: (B, H) -> dx, dh_prev, dw_ih, dw_hh, db_ih, db_hh."""
    dx, (dh_prev,), dparams = recurrent_step_backward((dh,), cache)
    return (dx, dh_prev) + tuple(dparams)
