"""The CPU GRU's fused pointwise steps (Numba): ops/gru.py's reference steps, compiled.

kernels/lstm_cpu.py's recipe for the GRU cell (gate order r, z, n), plugged into the one
recurrence driver (minis2s/ops/recurrent.py) with the arguments of ``ops.gru_forward_step`` /
``gru_backward_step`` (checked against them: tests/test_kernels_cpu.py):

    r = σ(xg_r + hg_r)   z = σ(xg_z + hg_z)   n = tanh(xg_n + r hg_n)   h = (1-z) n + z h_{t-1}
    da_n = dh (1-z)(1-n²)   da_z = dh (h_{t-1} - n) z(1-z)   da_r = da_n hg_n r(1-r)
    dxg = [da_r, da_z, da_n]   dhg = [da_r, da_z, da_n r]   dh_{t-1} = dh z + dhg W_hh

Unlike the LSTM's, the biases cannot all be folded: the reset gate scales ``hg_n`` *after* its
bias b_hh_n, so the kernel adds b_ih and b_hh separately, in the reference's order.

Versions (``VERSIONS``, numbered as kernels/lstm_cpu.py's: the GRU's kernels always used the
vectorisable tanh, so there is no version 1): 2, the driver's Python time loop around the fused
steps; 3, the same loops compiled whole with direct cblas calls (only where kernels/blas_cpu.py
finds NumPy's cblas).
"""
from __future__ import annotations

from minis2s.kernels.activations_cpu import sigmoid, tanh
from minis2s.kernels.lstm_cpu import JIT, versions
from numba import njit


@njit(**JIT)
def gru_forward_step(t, hg, hs, xg, out, lengths, b_ih, b_hh, hg_n):
    """Step t, ops.gru_forward_step's arguments. xg (T, B, 3H): x W_ihᵀ, overwritten with r, z, n; hg (B, 3H): h_{t-1} W_hhᵀ;
    reads hs[t], writes hs[t+1], out[t], hg_n[t]."""
    B, H = hs.shape[1], hs.shape[2]
    one = xg.dtype.type(1.0)
    for b in range(B):
        h_prev, h, o_t = hs[t, b], hs[t + 1, b], out[t, b]  # (H,)
        if t >= lengths[b]:  # padded step: keep the state, emit zero
            h[:] = h_prev
            o_t[:] = 0
            continue
        a, ha = xg[t, b], hg[b]  # (3H,)
        for j in range(2 * H):  # r, z
            a[j] = sigmoid((a[j] + b_ih[j]) + (ha[j] + b_hh[j]))
        hn, ha_n, bh_n = hg_n[t, b], ha[2 * H :], b_hh[2 * H :]
        for j in range(H):
            hn[j] = ha_n[j] + bh_n[j]
        r, z, n, bi_n = a[:H], a[H : 2 * H], a[2 * H :], b_ih[2 * H :]
        for j in range(H):
            n[j] = tanh((n[j] + bi_n[j]) + r[j] * hn[j])
        for j in range(H):
            h[j] = (one - z[j]) * n[j] + z[j] * h_prev[j]
            o_t[j] = h[j]


@njit(**JIT)
def gru_backward_step(t, dh, dh_z, dh_n, dout, has_dout, dxg, dhg, lengths, hs, gates, hg_n):
    """Step t, ops.gru_backward_step's arguments. dh (B, H): dhg_{t+1} W_hh (row b reads dh_n
    instead at its last step); dh_z (B, H): dh_{t+1} z_{t+1} in, dh_t z_t out; writes dxg[t],
    dhg[t] (B, 3H). dh is used as scratch."""
    B, H = dh.shape
    one = gates.dtype.type(1.0)
    for b in range(B):
        L = lengths[b]
        if t >= L:  # padded step: no gradient
            dxg[t, b] = 0
            dhg[t, b] = 0
            continue
        d, dz_carry = dh[b], dh_z[b]  # (H,)
        if t == L - 1:
            d[:] = dh_n[b]
        else:
            for j in range(H):
                d[j] = d[j] + dz_carry[j]
        if has_dout:
            do = dout[t, b]
            for j in range(H):
                d[j] = d[j] + do[j]
        a, hn, h_prev = gates[t, b], hg_n[t, b], hs[t, b]
        r, z, n = a[:H], a[H : 2 * H], a[2 * H :]
        gx, gh = dxg[t, b], dhg[t, b]  # (3H,)
        da_r, da_z, da_n, dh_r, dh_zg, dh_nr = gx[:H], gx[H : 2 * H], gx[2 * H :], gh[:H], gh[H : 2 * H], gh[2 * H :]
        for j in range(H):
            da_n[j] = d[j] * (one - z[j]) * (one - n[j] * n[j])
        for j in range(H):
            da_z[j] = d[j] * (h_prev[j] - n[j]) * z[j] * (one - z[j])
        for j in range(H):
            da_r[j] = da_n[j] * hn[j] * r[j] * (one - r[j])
        for j in range(H):
            dh_r[j] = da_r[j]
            dh_zg[j] = da_z[j]
        for j in range(H):
            dh_nr[j] = da_n[j] * r[j]
        for j in range(H):
            dz_carry[j] = d[j] * z[j]


VERSIONS = versions("gru", {2: gru_forward_step}, gru_backward_step)  # {version: ops.Steps}
DEFAULT_VERSION = 2  # version 3 measured no faster; version 4 (the rational tanh) is the LSTM's only


if __name__ == "__main__":  # python -m minis2s.kernels.gru_cpu: every version against the reference
    from minis2s.kernels.harness import report

    report("gru", VERSIONS)
