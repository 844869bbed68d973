"""Parameter and Module: PyTorch's bookkeeping, nothing more.

A Module owns Parameters and child Modules (registered by attribute assignment, in order, so
``named_parameters()`` and ``state_dict()`` keys are PyTorch's: ``encoder.rnn.weight_ih_l0``).

Forward/backward: each layer's ``forward`` pushes the cache its op returned onto the layer's
tape and ``backward`` pops it. A layer called several times (the decoder, once per time step)
therefore holds one cache per call, and backward must visit the calls in reverse order —
exactly the order backpropagation needs. Inside ``no_grad()`` nothing is pushed.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict

import numpy as np

from minis2s.backend import FLOAT_DTYPES, array_module, check_float_dtype, get_backend, to_numpy

_GRAD_ENABLED = [True]


@contextlib.contextmanager
def no_grad():
    """Within this block forward passes keep no caches (inference, decoding)."""
    old = _GRAD_ENABLED[0]
    _GRAD_ENABLED[0] = False
    try:
        yield
    finally:
        _GRAD_ENABLED[0] = old


def is_grad_enabled() -> bool:
    return _GRAD_ENABLED[0]


class Parameter:
    """A trainable array ``.data`` and its accumulated gradient ``.grad`` (None until set)."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        self.grad = None

    def accumulate(self, g):
        """``.grad += g`` (gradients add up across backward calls, as in PyTorch). The gradient
        keeps the parameter's dtype, as torch casts it, even if ``g`` arrived in float64 (a
        float64 upstream gradient into a float32 model)."""
        if self.grad is None:
            self.grad = g.astype(self.data.dtype)  # a copy
        else:
            self.grad += g

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_tape", [])
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_trace", None)  # the minis2s.trace recording this module (trace() sets it)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- the tape of caches ------------------------------------------------------------------
    def _push(self, cache):
        if _GRAD_ENABLED[0]:
            self._tape.append(cache)

    def _pop(self):
        if not self._tape:
            raise RuntimeError(
                f"{type(self).__name__}.backward called without a matching forward "
                "(or the forward ran inside no_grad())"
            )
        return self._tape.pop()

    def clear_tape(self):
        """Drop every pending cache in this module and its children (a forward never backed)."""
        for m in self.modules():
            m._tape.clear()

    # ---- traversal ---------------------------------------------------------------------------
    def modules(self):
        yield self
        for child in self._modules.values():
            yield from child.modules()

    def named_parameters(self, prefix: str = ""):
        for name, p in self._parameters.items():
            yield prefix + name, p
        for cname, child in self._modules.items():
            yield from child.named_parameters(prefix + cname + ".")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].data.dtype if params else None

    @property
    def xp(self):
        """The array module of this module's parameters."""
        params = self.parameters()
        return array_module(params[0].data) if params else np

    @property
    def device(self) -> str:
        """Where the parameters are: "cuda" (CuPy arrays) or "cpu" — read from them, so it is
        never stale after ``to()``."""
        return "cpu" if self.xp is np else "cuda"

    def to(self, device: str | None = None, dtype=None):
        """Move parameters (and gradients) to ``device`` ('cpu'/'cuda') and/or cast to ``dtype``."""
        if dtype is not None:
            dtype = check_float_dtype(dtype, "dtype")
        xp = get_backend(device) if device is not None else None
        for p in self.parameters():
            for attr in ("data", "grad"):
                a = getattr(p, attr)
                if a is None:
                    continue
                if xp is not None:
                    a = xp.asarray(to_numpy(a)) if xp is np else xp.asarray(a)
                if dtype is not None:
                    a = a.astype(dtype)
                setattr(p, attr, a)
        self.clear_tape()
        return self

    # ---- state dicts -------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameter name -> a NumPy copy of its values (PyTorch's keys)."""
        return OrderedDict((k, to_numpy(p.data).copy()) for k, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values in, casting to each parameter's dtype. Checks everything before touching
        anything, so a bad state dict leaves the module as it was.

        KeyError for missing/unexpected keys (strict), ValueError for a wrong shape or a
        non-finite value, TypeError for a value that is not a real-valued array.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        params = OrderedDict(self.named_parameters())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        staged = {}
        for k, p in params.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            if hasattr(v, "detach"):  # a torch tensor: duck-typed, torch is never imported here
                v = v.detach().cpu().numpy()
            if not hasattr(v, "shape") or not hasattr(v, "dtype"):
                raise TypeError(f"state_dict[{k!r}] must be an array, got {type(v).__name__}")
            v = to_numpy(v)
            if v.dtype.kind not in "fiu":
                raise TypeError(f"state_dict[{k!r}] must be a real-valued array, got dtype {v.dtype}")
            if tuple(v.shape) != tuple(p.data.shape):
                raise ValueError(
                    f"state_dict[{k!r}] has shape {tuple(v.shape)}, expected {tuple(p.data.shape)}"
                )
            if not np.all(np.isfinite(v)):
                raise ValueError(f"state_dict[{k!r}] contains NaN or infinite values")
            with np.errstate(over="ignore"):  # an overflow is refused below, not warned about
                cast = v.astype(p.data.dtype, copy=True)
            if not np.all(np.isfinite(cast)):  # finite before the cast: values beyond the dtype's range
                raise ValueError(f"state_dict[{k!r}] has values beyond {p.data.dtype}'s range "
                                 f"(largest magnitude {float(np.max(np.abs(v))):.3g})")
            staged[k] = cast
        xp = self.xp
        for k, v in staged.items():
            params[k].data = xp.asarray(v)
        return self

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            sub = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + ("\n)" if self._modules else ")")


def init_uniform(rng, shape, bound, dtype):
    """U(-bound, bound) as PyTorch initialises LSTM and Linear weights."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def default_dtype(dtype) -> np.dtype:
    d = check_float_dtype(np.float32 if dtype is None else dtype, "dtype")
    assert d in FLOAT_DTYPES
    return d
