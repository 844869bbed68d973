"""Finite-difference gradient checks: the proof that every backward pass is exact.

The scalar checked is ``L = Σ_k <dout_k, out_k>`` for a random upstream gradient ``dout`` (a
random projection of every output, as cs231n's ``eval_numerical_gradient_array`` does), so one
check covers the whole Jacobian-vector product rather than a sum that could hide sign errors.
Each input element is perturbed in place by ±eps and ``dL/dθ ≈ (L(θ+eps) - L(θ-eps)) / 2eps``
(central differences: error O(eps²) + round-off O(1e-16·|L|/eps); eps = 1e-5 balances
the two: at 1e-6 round-off alone reached ~1e-7 on a small Seq2Seq, at 1e-5 the worst was ~1e-8).

Error measure, per tensor: ``max|analytic - numeric| / max(max|analytic|, max|numeric|)``.
An elementwise ratio would blow up on entries that are ~0 in both, where the difference is
only round-off; scaling by the tensor's largest entry keeps the measure meaningful.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GradcheckResult:
    max_rel_error: float
    worst_tensor: str
    worst_index: tuple
    errors: dict = field(default_factory=dict)  # tensor name -> its relative error

    def __str__(self):
        per = ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())
        return (f"max relative error {self.max_rel_error:.3e} in {self.worst_tensor!r} at "
                f"{self.worst_index} ({per})")


def rel_error(analytic, numeric, floor: float = 0.0) -> float:
    """The one comparison the tests use: max abs difference / the larger tensor's max abs.

    (The module docstring's "relative error" and every bound in minis2s/tolerances.py.)
    ``floor``: the least scale divided by, for a tensor compared against the scale of others
    (tolerances.TORCH_F64_GRADIENT_FLOOR says when)."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {n.shape}")
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(n), initial=0.0), floor)
    diff = np.max(np.abs(a - n), initial=0.0)
    return 0.0 if diff == 0.0 else float(diff / max(scale, 1e-300))


def check_close(name, ours, ref, tol, floor: float = 0.0) -> float:
    """``rel_error(ours, ref, floor) <= tol``, or an AssertionError saying what differs, where and
    by how much; returns the error."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != reference {ref.shape}"
    err = rel_error(ours, ref, floor)
    if err > tol:
        k = np.unravel_index(np.argmax(np.abs(ours - ref)), ours.shape)
        raise AssertionError(f"{name}: relative error {err:.3e} > {tol:.0e}; worst at {k}: "
                             f"ours {ours[k]!r}, ref {ref[k]!r}")
    return err


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def gradcheck(forward, backward, tensors: dict, *, eps: float = 1e-5, seed: int = 0,
              max_per_tensor: int | None = None) -> GradcheckResult:
    """Check ``backward`` against central differences of ``forward``.

    forward():         returns an array or a tuple of arrays, reading ``tensors`` (float64);
    backward(douts):   given one upstream gradient per output, returns {name: gradient} for the
                       names in ``tensors`` (call forward first inside it if it needs a fresh
                       cache — gradcheck calls forward() once right before backward());
    tensors:           {name: float64 array}, perturbed in place and restored;
    max_per_tensor:    check at most this many randomly chosen elements of each tensor.

    Returns a GradcheckResult; ``.max_rel_error`` is the worst over all tensors.
    """
    for name, t in tensors.items():
        if not isinstance(t, np.ndarray) or t.dtype != np.float64:
            raise TypeError(f"tensors[{name!r}] must be a float64 NumPy array for a gradient check")
    rng = np.random.default_rng(seed)
    outs = _as_tuple(forward())
    douts = tuple(None if o is None else rng.standard_normal(np.shape(o)) for o in outs)
    analytic = backward(douts if len(douts) > 1 else douts[0])
    missing = [k for k in tensors if k not in analytic]
    if missing:
        raise KeyError(f"backward returned no gradient for {missing}")

    def objective():
        return sum(float(np.sum(o * d)) for o, d in zip(_as_tuple(forward()), douts) if d is not None)

    errors, worst = {}, (0.0, "", ())
    for name, t in tensors.items():
        a = np.asarray(analytic[name], dtype=np.float64)
        if a.shape != t.shape:
            raise ValueError(f"gradient of {name!r} has shape {a.shape}, the tensor {t.shape}")
        flat = t.reshape(-1)  # a view: perturbations reach the tensor
        idx = np.arange(flat.size)
        if max_per_tensor is not None and flat.size > max_per_tensor:
            idx = np.sort(rng.choice(flat.size, max_per_tensor, replace=False))
        numeric = np.empty(idx.size)
        for j, k in enumerate(idx):
            old = flat[k]
            flat[k] = old + eps
            up = objective()
            flat[k] = old - eps
            down = objective()
            flat[k] = old
            numeric[j] = (up - down) / (2 * eps)
        a_sel = a.reshape(-1)[idx]
        err = rel_error(a_sel, numeric)
        errors[name] = err
        if err >= worst[0]:
            k = int(idx[np.argmax(np.abs(a_sel - numeric))]) if idx.size else 0
            worst = (err, name, np.unravel_index(k, t.shape) if t.size else ())
    return GradcheckResult(worst[0], worst[1], tuple(int(i) for i in worst[2]), errors)


def gradcheck_module(module, run, *, inputs: dict | None = None, eps: float = 1e-5, seed: int = 0,
                     max_per_tensor: int | None = None) -> GradcheckResult:
    """Gradient check of every parameter of a float64 ``module`` (plus optional ``inputs``).

    run(): performs the module's forward and returns (outputs, backward_fn), where
    backward_fn(douts) runs the module's backward and returns {input name: gradient} for the
    names in ``inputs`` (an empty dict if none). Parameter gradients are read from ``.grad``.
    """
    inputs = inputs or {}
    tensors = dict(inputs)
    for name, p in module.named_parameters():
        tensors[name] = p.data
    state = {}

    def forward():
        module.clear_tape()
        outs, back = run()
        state["back"] = back
        return outs

    def backward(douts):
        module.zero_grad()
        got = dict(state["back"](douts))
        for name, p in module.named_parameters():
            got[name] = p.grad if p.grad is not None else np.zeros_like(p.data)
        return got

    return gradcheck(forward, backward, tensors, eps=eps, seed=seed, max_per_tensor=max_per_tensor)
