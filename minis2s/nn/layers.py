"""Embedding, Linear, Dropout and the loss as Modules: thin owners of parameters that call the
pure ops in minis2s/ops and keep their caches on the tape (see module.py)."""
from __future__ import annotations

import math

from minis2s import dispatch, ops
from minis2s.nn.module import Module, Parameter, default_dtype, init_uniform
from minis2s.random import default_rng
from minis2s.threads import blas_threads
from minis2s.validate import check_float_array, check_ids, check_positive_int, check_probability


class Embedding(Module):
    """``weight`` (num_embeddings, embedding_dim) ~ N(0, 1), as torch.nn.Embedding."""

    def __init__(self, num_embeddings: int, embedding_dim: int, *, dtype=None, rng=None):
        super().__init__()
        self.num_embeddings = check_positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        rng = rng or default_rng()
        dtype = default_dtype(dtype)
        self.weight = Parameter(rng.standard_normal((num_embeddings, embedding_dim)).astype(dtype))

    def forward(self, ids):
        """ids: integer array (...) -> (..., E)."""
        ids = check_ids("ids", ids, self.num_embeddings)
        out, cache = ops.embedding_forward(ids, self.weight.data)
        self._push(cache)
        return out

    def backward(self, dout):
        fused = dispatch.embedding_kernels(dout)  # np.add.at compiled (kernels/embedding_cpu.py), bit for bit
        self.weight.accumulate(ops.embedding_backward(dout, self._pop(), None if fused is None else fused.scatter_add))

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Linear(Module):
    """y = x Wᵀ + b; W, b ~ U(-1/√in, 1/√in) as torch.nn.Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, dtype=None, rng=None):
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        rng = rng or default_rng()
        dtype = default_dtype(dtype)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(init_uniform(rng, (out_features, in_features), bound, dtype))
        self.bias = Parameter(init_uniform(rng, (out_features,), bound, dtype)) if bias else None

    def forward(self, x):
        """x: (..., in) -> (..., out)."""
        check_float_array("x", x, dtype=self.weight.data.dtype)
        if x.ndim == 0:
            raise ValueError(f"x must have at least 1 dimension (..., {self.in_features}), got a scalar")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x has {x.shape[-1]} features in its last axis, expected {self.in_features}")
        macs = x.size * self.out_features  # rows · in · out
        with blas_threads(macs, work=x.size // self.in_features, kind="Linear.forward"):
            y, cache = ops.linear_forward(x, self.weight.data, None if self.bias is None else self.bias.data)
        self._push((cache, macs))
        return y

    def backward(self, dy):
        """dy: (..., out) -> dx (..., in)."""
        cache, macs = self._pop()
        with blas_threads(macs, work=dy.size // self.out_features, kind="Linear.backward"):
            dx, dw, db = ops.linear_backward(dy, cache)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Dropout(Module):
    """Inverted dropout in training mode, identity in eval mode.

    The masks come from ``forward``'s ``generator`` (the trainer passes its own, saved in every
    checkpoint), else the ``rng`` given here, else minis2s's seeded generator (``manual_seed``)."""

    def __init__(self, p: float = 0.5, *, rng=None):
        super().__init__()
        self.p = check_probability("p", p, closed_right=False)
        self.rng = rng

    def forward(self, x, generator=None):
        p = self.p if self.training else 0.0
        out, cache = ops.dropout_forward(x, p, generator or self.rng or default_rng())
        self._push(cache)
        return out

    def backward(self, dout):
        return ops.dropout_backward(dout, self._pop())

    def extra_repr(self):
        return f"p={self.p}"


class CrossEntropyLoss(Module):
    """Mean softmax cross-entropy over the targets that are not ``ignore_index``; with
    ``label_smoothing`` ε, against (1 - ε) onehot(target) + ε / V (PyTorch's); with ``soft``
    rows given to ``forward``, against q = (1 - soft_weight) · that + soft_weight · soft
    (token-level distillation: ``soft`` is a teacher's next-token distribution)."""

    def __init__(self, ignore_index: int = -100, *, soft_weight: float = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        self.ignore_index = int(ignore_index)
        self.soft_weight = check_probability("soft_weight", soft_weight)
        self.label_smoothing = check_probability("label_smoothing", label_smoothing)

    def forward(self, logits, targets, soft=None):
        """logits: (N, V) float, targets: (N,) int, soft: (N, V) float rows or None -> scalar loss."""
        check_float_array("logits", logits, ndim=2)
        if not hasattr(targets, "dtype") or targets.dtype.kind not in "iu":
            raise TypeError(f"targets must be an integer array, got {getattr(targets, 'dtype', type(targets).__name__)}")
        if targets.shape != logits.shape[:1]:
            raise ValueError(f"targets has shape {tuple(targets.shape)}, expected ({logits.shape[0]},)")
        if soft is not None:
            check_float_array("soft", soft, ndim=2, shape=logits.shape)
        valid = targets != self.ignore_index
        V = logits.shape[1]
        if valid.any() and (targets[valid].min() < 0 or targets[valid].max() >= V):
            raise ValueError(f"targets must be in [0, {V}) or equal ignore_index={self.ignore_index}")
        loss, cache = ops.cross_entropy_forward(logits, targets, self.ignore_index, soft, self.soft_weight,
                                                self.label_smoothing)
        self._push(cache)
        return float(loss)

    def backward(self, dloss: float = 1.0):
        return ops.cross_entropy_backward(dloss, self._pop())

    def extra_repr(self):
        return (f"ignore_index={self.ignore_index}, soft_weight={self.soft_weight}, "
                f"label_smoothing={self.label_smoothing}")
