"""SGD, Adam and gradient-norm clipping, step for step as torch.optim / torch.nn.utils.

Parameters with ``.grad is None`` are skipped, as in PyTorch. ``state_dict()`` /
``load_state_dict()`` hold plain arrays and numbers, so a checkpoint can store them.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from minis2s import dispatch
from minis2s.backend import array_module, to_numpy
from minis2s.nn.module import Parameter
from minis2s.validate import check_positive_real, check_probability


def check_weight_decay(weight_decay) -> float:
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real):
        raise TypeError(f"weight_decay must be a real number, got {type(weight_decay).__name__}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    return float(weight_decay)


class Optimizer:
    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError("params is empty: the optimiser has nothing to update")
        for k, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{k}] must be a minis2s Parameter, got {type(p).__name__}")
        self.lr = check_positive_real("lr", lr)
        self.state: list[dict] = [{} for _ in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def _with_grads(self):
        """(parameter, its state) for each parameter with a gradient, after checking every
        gradient's shape: one of the wrong shape would broadcast silently into the update."""
        for k, p in enumerate(self.params):
            if p.grad is not None and tuple(p.grad.shape) != tuple(p.data.shape):
                raise ValueError(f"params[{k}].grad has shape {tuple(p.grad.shape)}, but the parameter has shape "
                                 f"{tuple(p.data.shape)}")
        return [(p, st) for p, st in zip(self.params, self.state) if p.grad is not None]

    def state_dict(self) -> dict:
        """A snapshot: NumPy copies of the buffers, so stepping on does not change it."""
        return {
            "lr": self.lr,
            "state": [{k: (to_numpy(v).copy() if hasattr(v, "shape") else v) for k, v in s.items()}
                      for s in self.state],
        }

    def load_state_dict(self, sd: dict):
        """Copy a ``state_dict()`` in. Checks everything first, so a bad one changes nothing."""
        if not hasattr(sd, "keys") or "lr" not in sd or "state" not in sd:
            raise KeyError("optimiser state_dict must be a mapping with keys 'lr' and 'state'")
        lr = check_positive_real("state_dict['lr']", sd["lr"])
        if len(sd["state"]) != len(self.params):
            raise ValueError(f"optimiser state has {len(sd['state'])} entries for {len(self.params)} parameters")
        for i, (p, src) in enumerate(zip(self.params, sd["state"])):
            for k, v in src.items():
                if not hasattr(v, "shape"):
                    continue
                if tuple(v.shape) != tuple(p.data.shape):
                    raise ValueError(f"state_dict['state'][{i}][{k!r}] has shape {tuple(v.shape)}, "
                                     f"expected {tuple(p.data.shape)}")
                if not np.all(np.isfinite(to_numpy(v))):
                    raise ValueError(f"state_dict['state'][{i}][{k!r}] contains NaN or infinite values")
        self.lr = lr
        for p, src, dst in zip(self.params, sd["state"], self.state):
            dst.clear()
            xp = array_module(p.data)
            for k, v in src.items():  # copies: the loaded optimiser must not share buffers with sd
                dst[k] = xp.array(to_numpy(v), dtype=p.data.dtype) if hasattr(v, "shape") else v


class SGD(Optimizer):
    """v = μ·v + (g + λθ) (v = g on the first step); θ -= lr·v  (torch: dampening 0)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        super().__init__(params, lr)
        self.momentum = check_probability("momentum", momentum)
        self.weight_decay = check_weight_decay(weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        self.nesterov = nesterov

    def step(self):
        for p, st in self._with_grads():
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = g.copy()
                else:
                    st["momentum_buffer"] *= self.momentum
                    st["momentum_buffer"] += g
                buf = st["momentum_buffer"]
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g


class Adam(Optimizer):
    """torch.optim.Adam (L2 ``weight_decay`` added to the gradient, not AdamW):

        m = β1·m + (1-β1)·g;   v = β2·v + (1-β2)·g²
        θ -= lr/(1-β1^t) · m / (√v/√(1-β2^t) + eps)
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1, b2 = betas
        self.betas = (check_probability("betas[0]", b1, closed_right=False),
                      check_probability("betas[1]", b2, closed_right=False))
        self.eps = check_positive_real("eps", eps)
        self.weight_decay = check_weight_decay(weight_decay)

    def step(self):
        b1, b2 = self.betas
        for p, st in self._with_grads():
            xp = array_module(p.data)
            if not st:
                st["step"] = 0
                st["exp_avg"] = xp.zeros_like(p.data)
                st["exp_avg_sq"] = xp.zeros_like(p.data)
            st["step"] += 1
            t = st["step"]
            m, v = st["exp_avg"], st["exp_avg_sq"]
            fused = dispatch.optimizer_kernels(p.data, p.grad, m, v)
            if fused is not None:  # the same update in one pass (kernels/optim_cpu.py), bit for bit
                fused.adam_update(p.data, p.grad, m, v, lr=self.lr, betas=self.betas, eps=self.eps,
                                  weight_decay=self.weight_decay, step=t)
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            bias1 = 1 - b1**t
            bias2_sqrt = math.sqrt(1 - b2**t)
            denom = xp.sqrt(v) / bias2_sqrt + self.eps
            p.data -= (self.lr / bias1) * (m / denom)


def clip_grad_norm_(params, max_norm: float, norm_type: float = 2.0) -> float:
    """Scale all gradients by min(1, max_norm / (total_norm + 1e-6)); return total_norm.

    total_norm is the norm of all gradients together (torch.nn.utils.clip_grad_norm_).
    """
    max_norm = check_positive_real("max_norm", max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    xp = array_module(grads[0])
    fused = dispatch.optimizer_kernels(*grads) if norm_type == 2 else None
    if norm_type == math.inf:
        total = max(float(xp.abs(g).max()) for g in grads)
    elif fused is not None:  # one read of each gradient, no temporaries (kernels/optim_cpu.py)
        total = math.sqrt(sum(fused.sum_of_squares(g) for g in grads))
    else:
        total = float(sum(float((xp.abs(g) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type))
    coef = min(max_norm / (total + 1e-6), 1.0)
    if coef < 1.0:  # × 1.0 would change nothing (torch multiplies anyway)
        for g in grads:
            g *= coef
    return total
