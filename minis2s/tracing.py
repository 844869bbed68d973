"""``minis2s.trace``: record every gate, state and gradient of a model's recurrent layers.

    with minis2s.trace(model) as t:
        out = model(src, trg, 1.0)
        model.backward(dout)                      # optional: fills the gradients below
    layer = t.layers["encoder.rnn.l0"]            # RecurrentTrace: layer 0, forward direction
    layer.gates["f"]                              # (T, B, H) the forget gate at every step
    t.attention["decoder.attention"]              # (T, S, B) attention weights, one row per step
    t.arrays()                                    # every array above by a flat name, for a table

Names: a layer is ``<module path>.l<layer>`` (``_reverse`` for a bidirectional layer's reverse
direction: PyTorch's parameter suffixes), an attention module its path. Shapes (T steps, B batch,
H hidden, I the layer's input features, S source positions):

    h, c            (T, B, H)   the state after step t (c: LSTM only, else None)
    h0, c0          (B, H)      the state before the first step
    gates[name]     (T, B, H)   LSTM i, f, g, o; GRU r, z, n; the tanh RNN has none. 0 at padded
                                steps (t >= lengths[b]), where the cell did not run
    after backward:
    dh, dc          (T, B, H)   dL/dh_t, dL/dc_t: the gradient of the state step t hands on (to its
                                output and to step t+1), what the cell's backward receives; 0 at
                                padded steps
    dx              (T, B, I)   dL/dx_t, the gradient of the layer's input (layer 0: the embeddings)
    dh0, dc0        (B, H)      the gradient of the initial state

Time is reading order for both directions: step t is input position t (the reverse direction ran
t = T-1 ... 0, and its h0 is its state before position T-1). A layer called once per decoder step
(T = 1 each call) is recorded as one sequence, its calls concatenated along time. Record one
forward (and its backward) per ``with`` block. Arrays are NumPy copies in the model's dtype.

No cost when unused: the layers look at their ``_trace`` (None outside a ``with`` block: trace()
sets it on every module of the model it records, and clears it) after each
call and the trace reads the caches the call already made (``ops.RecurrentCache``: one layout
for the reference and every kernel, minis2s/ops/recurrent.py). The per-step gradients are not
kept by any backward (the fused ones overwrite them in place), so the trace replays
``ops.recurrent_backward`` on the cache with the reference's backward step behind one that
writes down what reaches each step: tracing a backward costs one more backward of each layer.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from minis2s import ops
from minis2s.backend import to_numpy
from minis2s.nn import Module
from minis2s.ops.recurrent import RecurrentCache, Steps


@dataclass
class RecurrentTrace:
    """One layer and direction: see the module docstring for every field's shape."""

    cell: str
    h: np.ndarray
    c: np.ndarray | None
    h0: np.ndarray
    c0: np.ndarray | None
    gates: dict = field(default_factory=dict)
    dh: np.ndarray | None = None
    dc: np.ndarray | None = None
    dx: np.ndarray | None = None
    dh0: np.ndarray | None = None
    dc0: np.ndarray | None = None


def _copy(a):
    return None if a is None else np.array(to_numpy(a))


def read_cache(cache: RecurrentCache) -> dict:
    """A layer-direction's forward cache (any implementation: they share one layout) -> its
    named arrays in the order the steps ran: h, c (T, B, H), h0, c0 (B, H), one (T, B, H) array
    per gate, mask (T, B) bool or None, and for the GRU hg_n (T, B, H), which its backward needs."""
    if not isinstance(cache, RecurrentCache):
        raise TypeError(f"trace reads a RecurrentCache, got {type(cache).__name__}")
    cell, hs = cache.cell, _copy(cache.hs)
    T, H = hs.shape[0] - 1, hs.shape[2]
    rec = {"h": hs[1:], "h0": hs[0]}
    lengths = to_numpy(cache.lengths)
    mask = None if (lengths == T).all() else np.arange(T)[:, None] < lengths[None, :]
    gates = _copy(cache.gates)
    for k, name in enumerate(cell.gate_names):
        rec[name] = gates[:, :, k * H : (k + 1) * H]
    if cell.name == "lstm":
        cs = _copy(cache.saved[0])
        rec["c"], rec["c0"] = cs[1:], cs[0]
    if cell.name == "gru":
        rec["hg_n"] = _copy(cache.saved[0])
    rec["mask"] = mask
    for name in cell.gate_names + (("hg_n",) if cell.name == "gru" else ()):
        if mask is not None:  # steps the cell did not run: 0 (the fused kernels leave them unwritten)
            rec[name] = np.where(mask[:, :, None], rec[name], 0.0).astype(hs.dtype)
    return rec


def replay_backward(cache: RecurrentCache, dout, dstate_n) -> tuple:
    """ops.recurrent_backward again, on NumPy copies of the cache, with the reference's backward
    step behind one that writes down what each step receives (``cell.received``) ->
    (dh (T, B, H), dc (T, B, H) or None), in the order the steps ran."""
    cell, received = cache.cell, []
    reference = cell.reference.backward_step

    def spy(t, dh, dcarry, dh_n, dout_, has_dout, dxg, dhg, lengths, *rest):
        received.append(tuple(np.array(d) for d in cell.received(t, dh, dcarry, dh_n, dout_, has_dout, lengths)))
        reference(t, dh, dcarry, dh_n, dout_, has_dout, dxg, dhg, lengths, *rest)

    lengths = to_numpy(cache.lengths)
    T = cache.hs.shape[0] - 1
    live = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]  # (T, B, 1)
    gates = np.where(live, to_numpy(cache.gates), 0.0).astype(cache.hs.dtype)  # unwritten rows: 0
    replay = RecurrentCache(cell, Steps.of("trace", cell.reference.forward_step, spy), to_numpy(cache.x),
                            to_numpy(cache.w_ih), to_numpy(cache.w_hh), to_numpy(cache.hs), gates,
                            tuple(to_numpy(a) for a in cache.saved), lengths)
    dout = None if dout is None else to_numpy(dout)
    ops.recurrent_backward(dout, tuple(None if d is None else to_numpy(d) for d in dstate_n), replay)
    received = received[::-1]  # backward ran t = T-1 ... 0
    dh = np.stack([d[0] for d in received])
    dc = np.stack([d[1] for d in received]) if cell.n_states == 2 else None
    return dh, dc


def _reading_order(a, rev):
    """(T, B, ·) from the order a reverse direction ran into reading order (the index is its own inverse)."""
    return a if rev is None or a is None else ops.reverse_time(a, to_numpy(rev))


def _module_names(model) -> dict:
    names, stack = {}, [("", model)]
    while stack:
        prefix, m = stack.pop()
        names[id(m)] = prefix[:-1]
        stack.extend((f"{prefix}{n}.", child) for n, child in m._modules.items())
    return names


class Trace:
    """What ``trace(model)`` records: ``layers`` {name: RecurrentTrace}, ``attention`` {name:
    (T, S, B)}, ``arrays()`` a flat {name: array}. See the module docstring."""

    def __init__(self, model):
        if not isinstance(model, Module):
            raise TypeError(f"model must be a minis2s Module, got {type(model).__name__} "
                            "(an Ensemble: trace each of its .models)")
        self.model = model
        self._names = _module_names(model)
        self._segments: dict[str, list] = {}  # layer name -> one dict per call, in call order
        self._by_cache: dict[int, dict] = {}  # id(cache) -> its segment, until its backward
        self._attention: dict[str, list] = {}  # attention name -> (S, B) per call

    # ---- the hooks the layers call (minis2s/nn/recurrent.py, minis2s/nn/attention.py) --------
    def recurrent_forward(self, module, layer, direction, cache, state_n, rev):
        name = self._names.get(id(module))
        if name is None:
            return  # a layer of another model
        key = f"{name + '.' if name else ''}l{layer}{'_reverse' if direction else ''}"
        seg = {"rec": read_cache(cache), "rev": rev, "cell": module.cell}
        self._segments.setdefault(key, []).append(seg)
        self._by_cache[id(cache)] = seg

    def recurrent_backward(self, cache, dout, dstate_n, dx, dstate0):
        """dout, dstate_n: what the layer-direction's backward was given (in the order its steps
        ran); dx (reading order) and dstate0: what it returned."""
        seg = self._by_cache.pop(id(cache), None)
        if seg is None:
            return
        seg["dh"], seg["dc"] = replay_backward(cache, dout, dstate_n)
        seg["dx"], seg["dstate0"] = _copy(dx), tuple(_copy(d) for d in dstate0)

    def attention_forward(self, module, weights):
        name = self._names.get(id(module))
        if name is not None:
            self._attention.setdefault(name, []).append(_copy(weights))

    # ---- what a user reads -------------------------------------------------------------------
    @property
    def layers(self) -> dict[str, RecurrentTrace]:
        return {key: self._layer(segs) for key, segs in self._segments.items()}

    @property
    def attention(self) -> dict[str, np.ndarray]:
        return {name: np.stack(steps) for name, steps in self._attention.items()}

    def _layer(self, segs) -> RecurrentTrace:
        cell = segs[0]["cell"].name

        def joined(name, where="rec"):  # dx arrived in reading order; the rest in the order steps ran
            parts = [s["rec"][name] if where == "rec" else s.get(name) for s in segs]
            if name != "dx":
                parts = [_reading_order(p, s["rev"]) for p, s in zip(parts, segs)]
            return None if any(p is None for p in parts) else np.concatenate(parts)

        first, lstm = segs[0], cell == "lstm"
        grads = all("dh" in s for s in segs)
        return RecurrentTrace(
            cell=cell, h=joined("h"), c=joined("c") if lstm else None, h0=first["rec"]["h0"],
            c0=first["rec"]["c0"] if lstm else None, gates={g: joined(g) for g in segs[0]["cell"].gate_names},
            dh=joined("dh", "seg") if grads else None, dc=joined("dc", "seg") if grads and lstm else None,
            dx=joined("dx", "seg") if grads else None,
            dh0=first["dstate0"][0] if grads else None, dc0=first["dstate0"][1] if grads and lstm else None)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every recorded array by a flat name: ``encoder.rnn.l0.f``, ``encoder.rnn.l0.dh``,
        ``decoder.attention.weights`` (gradients only after a backward)."""
        out = {}
        for key, lt in self.layers.items():
            for name in ("h", "c", "h0", "c0"):
                if getattr(lt, name) is not None:
                    out[f"{key}.{name}"] = getattr(lt, name)
            out.update({f"{key}.{g}": a for g, a in lt.gates.items()})
            for name in ("dh", "dc", "dx", "dh0", "dc0"):
                if getattr(lt, name) is not None:
                    out[f"{key}.{name}"] = getattr(lt, name)
        out.update({f"{name}.weights": w for name, w in self.attention.items()})
        return out


@contextlib.contextmanager
def trace(model):
    """``with trace(model) as t:`` records the recurrent layers and attention of ``model`` (a
    minis2s Module) while the block runs; returns the ``Trace``. One trace per model at a time."""
    t = Trace(model)
    modules = list(model.modules())
    if any(m._trace is not None for m in modules):
        raise RuntimeError("a trace is already recording this model: nest no trace inside another")
    for m in modules:
        object.__setattr__(m, "_trace", t)
    try:
        yield t
    finally:
        for m in modules:
            object.__setattr__(m, "_trace", None)
