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
    CellType,
    Steps,
    live_rows,
    single_state_step_backward,
    single_state_step_forward,
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


# ---- the reference steps: the math above as the driver's steps (minis2s/ops/recurrent.py) -----
# kernels/gru_cpu.py's fused steps take these same arguments.


def gru_forward_step(t, hg, hs, xg, out, lengths, b_ih, b_hh, hg_n):
    """Step t: xg[t] (B, 3H) = x_t W_ihᵀ, overwritten with r, z, n; hg (B, 3H) = h_{t-1} W_hhᵀ;
    the biases apart (the reset gate scales hg_n after b_hh_n); writes hs[t+1], out[t], hg_n[t]."""
    xp = array_module(hg)
    live, _ = live_rows(t, lengths)  # (B, 1): padded rows keep their state and emit 0
    (h,), (r, z, n, hgn, _) = gru_cell_forward(xg[t] + b_ih, hg + b_hh, (hs[t],))
    xg[t] = xp.concatenate([r, z, n], axis=1)
    hg_n[t] = hgn
    hs[t + 1] = xp.where(live, h, hs[t])
    out[t] = xp.where(live, h, 0.0)


def gru_received(t, dh, dh_z, dh_n, dout, has_dout, lengths):
    """(dh_t,): the GEMM's part dh plus the pointwise part dh_z carried from step t+1 (dh_n at a
    row's last step), plus the output's; zero on padded rows."""
    xp = array_module(dh)
    live, last = live_rows(t, lengths)
    d = xp.where(last, dh_n, dh + dh_z)
    if has_dout:
        d = d + dout[t]
    return (xp.where(live, d, 0.0),)


def gru_backward_step(t, dh, dh_z, dh_n, dout, has_dout, dxg, dhg, lengths, hs, gates, hg_n):
    """Step t: dh_z (B, H) dh_{t+1} ⊙ z_{t+1} in, dh_t ⊙ z_t out (padded rows: unchanged);
    writes dxg[t], dhg[t] (B, 3H)."""
    xp = array_module(dh)
    H = dh.shape[1]
    live, _ = live_rows(t, lengths)
    a = gates[t]  # (B, 3H)
    step = (a[:, :H], a[:, H : 2 * H], a[:, 2 * H :], hg_n[t], hs[t])
    dxg_t, dhg_t, (dz,) = gru_cell_backward(gru_received(t, dh, dh_z, dh_n, dout, has_dout, lengths), step)
    dxg[t] = xp.where(live, dxg_t, 0.0)
    dhg[t] = xp.where(live, dhg_t, 0.0)
    dh_z[...] = xp.where(live, dz, dh_z)


GRU_CELL = CellType(
    "gru", 3, 1, ("r", "z", "n"), gru_cell_forward, gru_cell_backward,
    biases=lambda b_ih, b_hh: (b_ih, b_hh),
    saved=lambda state0, T, B, H, dtype, xp: (xp.empty((T, B, H), dtype=dtype),),  # hg_n
    received=gru_received,
    state0_gradient=lambda dh, dh_z: (dh + dh_z,),  # through the GEMM + through z
    separate_dhg=True,
    reference=Steps.of("reference", gru_forward_step, gru_backward_step),
)


def gru_step_forward(x, h_prev, w_ih, w_hh, b_ih, b_hh):
    """x: (B, I), h_prev: (B, H), w_ih: (3H, I), w_hh: (3H, H) -> h (B, H), cache."""
    return single_state_step_forward(GRU_CELL, x, h_prev, w_ih, w_hh, b_ih, b_hh)


gru_step_backward = single_state_step_backward  # dh (B, H) -> dx, dh_prev, dw_ih, dw_hh, db_ih, db_hh
