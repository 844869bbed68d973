"""Multi-layer LSTM, GRU and RNN modules with PyTorch's parameter names and semantics.

Parameters per layer l: ``weight_ih_l{l}`` (G, I_l), ``weight_hh_l{l}`` (G, H), ``bias_ih_l{l}``,
``bias_hh_l{l}`` (G,), G = 4H (LSTM), 3H (GRU), H (RNN); all ~ U(-1/√H, 1/√H) as in torch.
Dropout is applied to the output of every layer but the last (torch's ``dropout=``).

``bidirectional=True`` adds a reverse direction per layer, ``*_l{l}_reverse`` (torch's names and
order: forward then reverse parameters of layer l, then layer l+1). Layer l > 0 reads both
directions, I_l = 2H. Outputs concatenate the directions, out (T, B, 2H) = [forward | reverse];
states are (2L, B, H) with row 2l the forward and 2l+1 the reverse direction of layer l. With
``lengths`` the reverse direction reads each row reversed within its own length
(``ops.reverse_time``), so it starts at the row's last real step, as torch's packed sequences do.

Each layer runs the one recurrence driver (minis2s/ops/recurrent.py) with the steps
minis2s/dispatch.py picks: the reference, or a fused kernel's (same numbers).
"""
from __future__ import annotations

import math

from minis2s import dispatch, ops
from minis2s.backend import array_module
from minis2s.nn.module import Module, Parameter, default_dtype, init_uniform
from minis2s.random import default_rng
from minis2s.threads import blas_threads, recurrent_step_macs
from minis2s.validate import check_float_array, check_lengths, check_positive_int, check_probability


class RNNBase(Module):
    mode = ""  # a key of ops.CELLS

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 *, bidirectional: bool = False, dtype=None, rng=None):
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.dropout = check_probability("dropout", dropout, closed_right=False)
        if not isinstance(bidirectional, bool):
            raise TypeError(f"bidirectional must be a bool, got {type(bidirectional).__name__}")
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.cell = ops.CELLS[self.mode]
        self.rng = rng
        rng = rng or default_rng()
        dtype = default_dtype(dtype)
        G, H = self.cell.gates * hidden_size, hidden_size
        bound = 1.0 / math.sqrt(H)
        for layer in range(num_layers):
            i = input_size if layer == 0 else H * self.num_directions
            for suffix in ("", "_reverse")[: self.num_directions]:
                name = f"l{layer}{suffix}"
                setattr(self, f"weight_ih_{name}", Parameter(init_uniform(rng, (G, i), bound, dtype)))
                setattr(self, f"weight_hh_{name}", Parameter(init_uniform(rng, (G, H), bound, dtype)))
                setattr(self, f"bias_ih_{name}", Parameter(init_uniform(rng, (G,), bound, dtype)))
                setattr(self, f"bias_hh_{name}", Parameter(init_uniform(rng, (G,), bound, dtype)))

    def layer_params(self, layer: int, direction: int = 0):
        """[weight_ih, weight_hh, bias_ih, bias_hh] of one layer; direction 1 is ``*_reverse``."""
        suffix = "_reverse" if direction else ""
        return [getattr(self, f"{n}_l{layer}{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def _check_state(self, state, B):
        """state: tuple of (L·D, B, H) arrays (D directions), or None for zeros."""
        L, H, dtype, xp = self.num_layers * self.num_directions, self.hidden_size, self.dtype, self.xp
        if state is None:
            return tuple(xp.zeros((L, B, H), dtype=dtype) for _ in range(self.cell.n_states))
        names = ("h0", "c0")[: self.cell.n_states]
        for name, s in zip(names, state):
            check_float_array(name, s, ndim=3, dtype=dtype, shape=(L, B, H))
        return tuple(state)

    def forward_states(self, x, state=None, lengths=None, generator=None):
        """The forward of every cell type with the state as one tuple: (h, c) for the LSTM, (h,)
        for the GRU and the RNN (``self.cell.n_states`` entries), or None for zeros.

        x: (T, B, I); state: tuple of (L·D, B, H) -> out (T, B, D·H), tuple of (L·D, B, H).
        ``forward`` is torch's signature over this; models that take any cell type call this.
        ``generator``: the dropout masks between layers (else the module's ``rng``, else
        minis2s's seeded generator)."""
        check_float_array("x", x, ndim=3, dtype=self.dtype)
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"x has {I} features, expected input_size={self.input_size}")
        state = self._check_state(state, B)
        if lengths is not None:
            lengths = check_lengths("lengths", lengths, B, T)
        xp, D = self.xp, self.num_directions
        rev = None if D == 1 else ops.reverse_time_index(T, B, lengths, xp)  # (T, B)
        finals = [xp.empty_like(s) for s in state]
        caches = []
        inp = x
        macs = recurrent_step_macs(self, B)  # the size of the GEMMs that repeat: one step's
        # one thread count for the whole call, every layer (switching it between consecutive GEMMs
        # wakes or idles the BLAS pool and costs more than it saves: minis2s/threads.py)
        with blas_threads(macs, work=T * B * self.num_layers * D, kind=f"{type(self).__name__}.forward"):
            for layer in range(self.num_layers):
                outs, dir_caches = [], []
                for d in range(D):
                    k = layer * D + d  # the state row of this layer and direction (torch's order)
                    w = [p.data for p in self.layer_params(layer, d)]
                    x_d = inp if d == 0 else ops.reverse_time(inp, rev)  # reverse: each row within its length
                    steps = dispatch.recurrent_steps(self.cell, x_d)  # the reference or a fused kernel's
                    out, s_n, cache = ops.recurrent_forward(self.cell, x_d, tuple(s[k] for s in state), *w,
                                                            lengths=lengths, steps=steps)
                    for f, s in zip(finals, s_n):
                        f[k] = s
                    if self._trace is not None:  # minis2s.trace: reads the cache just made
                        self._trace.recurrent_forward(self, layer, d, cache, s_n, rev if d else None)
                    outs.append(out if d == 0 else ops.reverse_time(out, rev))  # back to reading order
                    dir_caches.append(cache)
                out = outs[0] if D == 1 else xp.concatenate(outs, axis=2)  # (T, B, D·H)
                drop = None
                if layer < self.num_layers - 1 and self.training and self.dropout > 0:
                    out, drop = ops.dropout_forward(out, self.dropout, generator or self.rng or default_rng())
                caches.append((dir_caches, drop))
                inp = out
        self._push((caches, rev, macs))
        return inp, tuple(finals)

    def backward_states(self, dout, dstate_n):
        """``forward_states``'s backward: dout (T, B, D·H) or None; dstate_n: tuple of (L·D, B, H)
        or None entries -> dx (T, B, I), dstate0 (a tuple like the state)."""
        caches, rev, macs = self._pop()
        D, H = self.num_directions, self.hidden_size
        ds0_layers = [None] * (self.num_layers * D)
        d = dout
        rows = sum(c.x.shape[0] * c.x.shape[1] for dir_caches, _ in caches for c in dir_caches)  # Σ T·B
        with blas_threads(macs, work=rows, kind=f"{type(self).__name__}.backward"):  # one count, as forward
            for layer in reversed(range(self.num_layers)):
                dir_caches, drop = caches[layer]
                d = None if d is None else ops.dropout_backward(d, drop)
                dx = None
                for direction, cache in enumerate(dir_caches):  # the cache names the steps that made it
                    k = layer * D + direction
                    d_dir = d if (d is None or D == 1) else d[:, :, direction * H : (direction + 1) * H]
                    if direction == 1 and d_dir is not None:
                        d_dir = ops.reverse_time(d_dir, rev)  # into the order the reverse pass ran in
                    ds_n = tuple(None if s is None else s[k] for s in dstate_n)
                    dx_dir, ds0_layers[k], grads = ops.recurrent_backward(d_dir, ds_n, cache)
                    if direction == 1:
                        dx_dir = ops.reverse_time(dx_dir, rev)
                    if self._trace is not None:
                        self._trace.recurrent_backward(cache, d_dir, ds_n, dx_dir, ds0_layers[k])
                    for p, g in zip(self.layer_params(layer, direction), grads):
                        p.accumulate(g)
                    dx = dx_dir if dx is None else dx + dx_dir
                d = dx
        xp = array_module(d)
        dstate0 = tuple(xp.stack([ds0[k] for ds0 in ds0_layers]) for k in range(len(dstate_n)))
        return d, dstate0  # each (L·D, B, H)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        s += f", dropout={self.dropout}" if self.dropout else ""
        return s + (", bidirectional=True" if self.bidirectional else "")


class LSTM(RNNBase):
    """torch.nn.LSTM (time first): forward(x, (h0, c0)) -> out, (h_n, c_n)."""

    mode = "lstm"

    def forward(self, x, state=None, lengths=None, *, generator=None):
        """x: (T, B, I); state: (h0, c0) each (L·D, B, H) or None; lengths: (B,) ints or None;
        generator: the dropout masks between layers (``forward_states``).

        Returns out (T, B, D·H) and (h_n, c_n) each (L·D, B, H); D = 2 if bidirectional else 1.
        """
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise TypeError("state must be a tuple (h0, c0) or None")
        out, (h, c) = self.forward_states(x, state, lengths, generator)
        return out, (h, c)

    def backward(self, dout, dh_n=None, dc_n=None, return_state_grads=False):
        """dout: (T, B, H); dh_n, dc_n: (L, B, H) or None -> dx (T, B, I)
        [, (dh0, dc0)] when ``return_state_grads``."""
        dx, (dh0, dc0) = self.backward_states(dout, (dh_n, dc_n))
        return (dx, (dh0, dc0)) if return_state_grads else dx


class _SingleStateRNN(RNNBase):
    """GRU and RNN: the state is h alone, passed as an (L, B, H) array as in torch."""

    def forward(self, x, h0=None, lengths=None, *, generator=None):
        """x: (T, B, I); h0: (L, B, H) or None -> out (T, B, H), h_n (L, B, H)."""
        out, (h,) = self.forward_states(x, None if h0 is None else (h0,), lengths, generator)
        return out, h

    def backward(self, dout, dh_n=None, return_state_grads=False):
        dx, (dh0,) = self.backward_states(dout, (dh_n,))
        return (dx, dh0) if return_state_grads else dx


class GRU(_SingleStateRNN):
    """torch.nn.GRU (time first), gate order (r, z, n)."""

    mode = "gru"


class RNN(_SingleStateRNN):
    """torch.nn.RNN with nonlinearity='tanh' (time first)."""

    mode = "rnn_tanh"
