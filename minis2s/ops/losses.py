"""Softmax cross-entropy with padding, PyTorch's F.cross_entropy(..., ignore_index, 'mean'),
optionally against soft targets mixed into the one-hot ones (token-level distillation).

    log p = z - max(z) - log Σ exp(z - max(z))          (stable: no exp of a large number)
    q     = (1 - λ) onehot(y) + λ soft                   (soft=None or λ = 0: q = onehot(y))
    loss  = -(1/N) Σ_{n: y_n ≠ ignore} Σ_v q[n, v] log p[n, v]     N = number of non-ignored targets
    dz    = (softmax(z) - q) / N,  zero on ignored rows  (Σ_v q = 1, so Σ_v dz = 0 per row)

``soft`` rows are distributions, e.g. a teacher ensemble's next-token probabilities (Sun et
al. 2019); their values on ignored rows are never read.
"""
from minis2s.backend import array_module


def log_softmax(z, axis=-1):
    xp = array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def cross_entropy_forward(logits, targets, ignore_index=-100, soft=None, soft_weight=1.0):
    """logits: (N, V), targets: (N,) ints in [0, V) or == ignore_index, soft: (N, V) rows
    summing to 1 or None, soft_weight: λ in [0, 1] -> scalar loss, cache.

    Raises ValueError when every target is ignored (PyTorch returns NaN there).
    """
    xp = array_module(logits)
    targets = xp.asarray(targets)  # NumPy targets for CuPy logits go to the GPU (no-op on CPU)
    keep = targets != ignore_index  # (N,)
    count = int(keep.sum())
    if count == 0:
        raise ValueError("targets: every target equals ignore_index, so the mean loss is undefined")
    if not 0.0 <= soft_weight <= 1.0:
        raise ValueError(f"soft_weight must be in [0, 1], got {soft_weight}")
    logp = log_softmax(logits, axis=1)  # (N, V)
    safe = xp.where(keep, targets, 0)
    picked = logp[xp.arange(logits.shape[0]), safe]  # (N,)
    if soft is None or soft_weight == 0.0:  # the hard targets alone, exactly as without soft
        loss = -(picked * keep).sum() / count
        return loss, (logp, safe, keep, count, None, 0.0)
    soft = xp.where(keep[:, None], xp.asarray(soft, dtype=logp.dtype), 0.0)  # (N, V): ignored rows never read
    expected = (1.0 - soft_weight) * picked + soft_weight * (soft * logp).sum(axis=1)  # (N,) Σ_v q log p
    loss = -(expected * keep).sum() / count
    return loss, (logp, safe, keep, count, soft, soft_weight)


def cross_entropy_backward(dloss, cache):
    """dloss: scalar upstream gradient -> dlogits (N, V)."""
    xp = array_module(cache[0])
    logp, safe, keep, count, soft, soft_weight = cache
    dz = xp.exp(logp)  # softmax, (N, V)
    dz[xp.arange(dz.shape[0]), safe] -= 1.0 - soft_weight  # λ = 0: exactly 1.0, the plain cross-entropy
    if soft is not None:
        dz -= soft_weight * soft
    dz *= (keep[:, None] * (dloss / count)).astype(dz.dtype)
    return dz
