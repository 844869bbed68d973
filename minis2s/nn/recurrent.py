"""Multi-layer LSTM, GRU and RNN modules with PyTorch's parameter names and semantics.

Parameters per layer l: ``weight_ih_l{l}`` (G, I_l), ``weight_hh_l{l}`` (G, H), ``bias_ih_l{l}``,
``bias_hh_l{l}`` (G,), G = 4H (LSTM), 3H (GRU), H (RNN); all ~ U(-1/√H, 1/√H) as in torch.
Dropout is applied to the output of every layer but the last (torch's ``dropout=``).

The per-layer math is the shared recurrence in minis2s/ops/recurrent.py, or for NumPy LSTMs and GRUs the
fused CPU kernels when Numba is present (minis2s/fastpath.py chooses; same numbers).
"""
from __future__ import annotations

import math

from minis2s import fastpath, ops
from minis2s.backend import array_module
from minis2s.nn.module import Module, Parameter, default_dtype, init_uniform
from minis2s.random import default_rng
from minis2s.validate import check_float_array, check_lengths, check_positive_int, check_probability


class RNNBase(Module):
    mode = ""  # a key of ops.CELLS

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 *, dtype=None, rng=None):
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.dropout = check_probability("dropout", dropout, closed_right=False)
        self.cell = ops.CELLS[self.mode]
        self.rng = rng
        rng = rng or default_rng()
        dtype = default_dtype(dtype)
        G, H = self.cell.gates * hidden_size, hidden_size
        bound = 1.0 / math.sqrt(H)
        for layer in range(num_layers):
            i = input_size if layer == 0 else H
            setattr(self, f"weight_ih_l{layer}", Parameter(init_uniform(rng, (G, i), bound, dtype)))
            setattr(self, f"weight_hh_l{layer}", Parameter(init_uniform(rng, (G, H), bound, dtype)))
            setattr(self, f"bias_ih_l{layer}", Parameter(init_uniform(rng, (G,), bound, dtype)))
            setattr(self, f"bias_hh_l{layer}", Parameter(init_uniform(rng, (G,), bound, dtype)))

    def layer_params(self, layer: int):
        return [getattr(self, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def _check_state(self, state, B):
        """state: tuple of (L, B, H) arrays, or None for zeros."""
        L, H, dtype, xp = self.num_layers, self.hidden_size, self.dtype, self.xp
        if state is None:
            return tuple(xp.zeros((L, B, H), dtype=dtype) for _ in range(self.cell.n_states))
        names = ("h0", "c0")[: self.cell.n_states]
        for name, s in zip(names, state):
            check_float_array(name, s, ndim=3, dtype=dtype, shape=(L, B, H))
        return tuple(state)

    def _forward(self, x, state, lengths):
        """x: (T, B, I); state: tuple of (L, B, H) -> out (T, B, H), tuple of (L, B, H)."""
        check_float_array("x", x, ndim=3, dtype=self.dtype)
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"x has {I} features, expected input_size={self.input_size}")
        state = self._check_state(state, B)
        if lengths is not None:
            lengths = check_lengths("lengths", lengths, B, T)
        xp = self.xp
        finals = [xp.empty_like(s) for s in state]
        caches = []
        inp = x
        for layer in range(self.num_layers):
            w = [p.data for p in self.layer_params(layer)]
            forward, backward = fastpath.recurrent_functions(self.cell, inp)  # reference or fused
            out, s_n, cache = forward(self.cell, inp, tuple(s[layer] for s in state), *w, lengths=lengths)
            for f, s in zip(finals, s_n):
                f[layer] = s
            drop = None
            if layer < self.num_layers - 1 and self.training and self.dropout > 0:
                out, drop = ops.dropout_forward(out, self.dropout, self.rng or default_rng())
            caches.append((cache, drop, backward))
            inp = out
        self._push(caches)
        return inp, tuple(finals)

    def _backward(self, dout, dstate_n):
        """dout: (T, B, H); dstate_n: tuple of (L, B, H) or None -> dx (T, B, I), dstate0."""
        caches = self._pop()
        ds0_layers = [None] * self.num_layers
        d = dout
        for layer in reversed(range(self.num_layers)):
            cache, drop, backward = caches[layer]  # the backward of the path that made the cache
            d = ops.dropout_backward(d, drop)
            ds_n = tuple(None if s is None else s[layer] for s in dstate_n)
            d, ds0_layers[layer], grads = backward(d, ds_n, cache)
            for p, g in zip(self.layer_params(layer), grads):
                p.accumulate(g)
        xp = array_module(d)
        dstate0 = tuple(xp.stack([ds0[k] for ds0 in ds0_layers]) for k in range(len(dstate_n)))
        return d, dstate0  # each (L, B, H)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        return s + (f", dropout={self.dropout}" if self.dropout else "")


class LSTM(RNNBase):
    """torch.nn.LSTM (time first): forward(x, (h0, c0)) -> out, (h_n, c_n)."""

    mode = "lstm"

    def forward(self, x, state=None, lengths=None):
        """x: (T, B, I); state: (h0, c0) each (L, B, H) or None; lengths: (B,) ints or None.

        Returns out (T, B, H) and (h_n, c_n) each (L, B, H).
        """
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise TypeError("state must be a tuple (h0, c0) or None")
        out, (h, c) = self._forward(x, state, lengths)
        return out, (h, c)

    def backward(self, dout, dh_n=None, dc_n=None, return_state_grads=False):
        """dout: (T, B, H); dh_n, dc_n: (L, B, H) or None -> dx (T, B, I)
        [, (dh0, dc0)] when ``return_state_grads``."""
        dx, (dh0, dc0) = self._backward(dout, (dh_n, dc_n))
        return (dx, (dh0, dc0)) if return_state_grads else dx


class _SingleStateRNN(RNNBase):
    """GRU and RNN: the state is h alone, passed as an (L, B, H) array as in torch."""

    def forward(self, x, h0=None, lengths=None):
        """x: (T, B, I); h0: (L, B, H) or None -> out (T, B, H), h_n (L, B, H)."""
        out, (h,) = self._forward(x, None if h0 is None else (h0,), lengths)
        return out, h

    def backward(self, dout, dh_n=None, return_state_grads=False):
        dx, (dh0,) = self._backward(dout, (dh_n,))
        return (dx, dh0) if return_state_grads else dx


class GRU(_SingleStateRNN):
    """torch.nn.GRU (time first), gate order (r, z, n)."""

    mode = "gru"


class RNN(_SingleStateRNN):
    """torch.nn.RNN with nonlinearity='tanh' (time first)."""

    mode = "rnn_tanh"
