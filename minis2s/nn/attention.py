"""Attention as a Module: owns the score's parameters and calls minis2s/ops/attention.py.

    kind "bahdanau"   weight_query (A, Hq), weight_key (A, Hk), v (A,)   e_s = vᵀ tanh(W_q q + W_k k_s)
    kind "general"    weight (Hq, Hk)                                     e_s = qᵀ W k_s
    kind "dot"        no parameters (Hq = Hk)                             e_s = qᵀ k_s

Parameters ~ U(-1/√fan_in, 1/√fan_in), as torch.nn.Linear. A decoder uses it in two halves:

    proj = attn.keys_forward(keys)                          once per source batch, keys (S, B, Hk)
    context, weights = attn(query, keys, proj, mask)        every step, query (B, Hq)
    ...
    dquery, dkeys, dproj = attn.backward(dcontext)          every step, in reverse order
    dkeys += attn.keys_backward(Σ dproj)                    once, after the steps

Both halves share this module's tape (last in, first out), so the steps' caches come off
before the keys' cache, the order their backward passes need.
"""
from __future__ import annotations

import math

from minis2s import ops
from minis2s.nn.module import Module, Parameter, default_dtype, init_uniform
from minis2s.random import default_rng
from minis2s.threads import blas_threads
from minis2s.validate import check_float_array, check_positive_int


class Attention(Module):
    def __init__(self, kind: str, query_size: int, key_size: int, attention_size: int | None = None,
                 *, dtype=None, rng=None):
        super().__init__()
        if kind not in ops.ATTENTION_PARAMS:
            raise ValueError(f"attention kind must be one of {sorted(ops.ATTENTION_PARAMS)}, got {kind!r}")
        self.kind = kind
        self.query_size = check_positive_int("query_size", query_size)
        self.key_size = check_positive_int("key_size", key_size)
        self.attention_size = check_positive_int("attention_size", attention_size or query_size)
        if kind == "dot" and query_size != key_size:
            raise ValueError(f"dot attention needs query_size == key_size, got {query_size} and {key_size}")
        rng = rng or default_rng()
        dtype = default_dtype(dtype)
        Hq, Hk, A = self.query_size, self.key_size, self.attention_size
        if kind == "bahdanau":
            self.weight_query = Parameter(init_uniform(rng, (A, Hq), 1.0 / math.sqrt(Hq), dtype))
            self.weight_key = Parameter(init_uniform(rng, (A, Hk), 1.0 / math.sqrt(Hk), dtype))
            self.v = Parameter(init_uniform(rng, (A,), 1.0 / math.sqrt(A), dtype))
        elif kind == "general":
            self.weight = Parameter(init_uniform(rng, (Hq, Hk), 1.0 / math.sqrt(Hk), dtype))

    def _params(self):
        return tuple(getattr(self, n).data for n in ops.ATTENTION_PARAMS[self.kind])

    def _accumulate(self, grads):
        for name, g in zip(ops.ATTENTION_PARAMS[self.kind], grads):
            if g is not None:
                getattr(self, name).accumulate(g)

    def keys_forward(self, keys):
        """keys: (S, B, Hk) -> proj, the keys' half of every score (S, B, A|Hq|Hk)."""
        check_float_array("keys", keys, ndim=3, dtype=self.dtype)
        if keys.shape[2] != self.key_size:
            raise ValueError(f"keys have {keys.shape[2]} features, expected key_size={self.key_size}")
        macs = keys.size * self.attention_size if self.kind == "bahdanau" else keys.size * self.query_size
        with blas_threads(macs, work=keys.shape[0] * keys.shape[1], kind="Attention.keys_forward"):
            proj, cache = ops.attention_keys_forward(self.kind, keys, self._params())
        self._push((cache, macs))
        return proj

    def keys_backward(self, dproj):
        """dproj: the sum over steps of the steps' dproj -> dkeys (S, B, Hk)."""
        cache, macs = self._pop()
        with blas_threads(macs, work=dproj.shape[0] * dproj.shape[1], kind="Attention.keys_backward"):
            dkeys, grads = ops.attention_keys_backward(dproj, cache)
        self._accumulate(grads)
        return dkeys

    def forward(self, query, keys, proj, mask):
        """query: (B, Hq); keys: (S, B, Hk); proj from keys_forward; mask: (S, B) bool, True at
        real positions -> context (B, Hk), weights (S, B) (exactly 0 where mask is False)."""
        check_float_array("query", query, ndim=2, dtype=self.dtype)
        if query.shape[1] != self.query_size:
            raise ValueError(f"query has {query.shape[1]} features, expected query_size={self.query_size}")
        # a step's GEMMs are (B, Hq) against keys (S, B, Hk): small
        with blas_threads(keys.size, work=query.shape[0], kind="Attention.forward"):
            context, weights, cache = ops.attention_step_forward(self.kind, query, keys, proj, mask, self._params())
        self._push((cache, keys.size))
        if self._trace is not None:  # minis2s.trace
            self._trace.attention_forward(self, weights)
        return context, weights

    def backward(self, dcontext, dweights=None):
        """dcontext: (B, Hk); dweights: (S, B) or None -> dquery (B, Hq), dkeys (S, B, Hk), dproj."""
        cache, macs = self._pop()
        with blas_threads(macs, work=dcontext.shape[0], kind="Attention.backward"):
            dquery, dkeys, dproj, grads = ops.attention_step_backward(dcontext, cache, dweights)
        self._accumulate(grads)
        return dquery, dkeys, dproj

    def extra_repr(self):
        return f"{self.kind!r}, query_size={self.query_size}, key_size={self.key_size}" + (
            f", attention_size={self.attention_size}" if self.kind == "bahdanau" else "")
