"""Softmax cross-entropy with padding, PyTorch's F.cross_entropy(..., ignore_index,
label_smoothing, 'mean'), optionally against soft targets mixed into the hard ones (token-level
distillation).

    log p = z - max(z) - log Σ exp(z - max(z))          (stable: no exp of a large number)
    h     = (1 - ε) onehot(y) + ε / V                    (label smoothing ε: PyTorch's, over all V classes)
    q     = (1 - λ) h + λ soft                           (soft=None or λ = 0: q = h)
    loss  = -(1/N) Σ_{n: y_n ≠ ignore} Σ_v q[n, v] log p[n, v]     N = number of non-ignored targets
    dz    = (softmax(z) - q) / N,  zero on ignored rows  (Σ_v q = 1, so Σ_v dz = 0 per row)

``soft`` rows are distributions, e.g. a teacher ensemble's next-token probabilities (Sun et
al. 2019); their values on ignored rows are never read. Label smoothing (Szegedy et al. 2016)
moves ε of every target's mass evenly onto all V classes, so the model is never pushed to
certainty: with ε = 0 the loss is the plain cross-entropy, bit for bit.
"""
from minis2s.backend import array_module


def log_softmax(z, axis=-1):
    xp = array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def cross_entropy_forward(logits, targets, ignore_index=-100, soft=None, soft_weight=1.0, label_smoothing=0.0):
    """logits: (N, V), targets: (N,) ints in [0, V) or == ignore_index, soft: (N, V) rows
    summing to 1 or None, soft_weight: λ in [0, 1], label_smoothing: ε in [0, 1] -> scalar
    loss, cache.

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
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    logp = log_softmax(logits, axis=1)  # (N, V)
    safe = xp.where(keep, targets, 0)
    picked = logp[xp.arange(logits.shape[0]), safe]  # (N,): log p of the target
    if label_smoothing:  # Σ_v h log p = (1 - ε) log p_y + ε mean_v log p
        picked = (1.0 - label_smoothing) * picked + label_smoothing * logp.mean(axis=1)
    if soft is None or soft_weight == 0.0:  # the hard targets alone, exactly as without soft
        loss = -(picked * keep).sum() / count
        return loss, (logp, safe, keep, count, None, 0.0, label_smoothing)
    soft = xp.where(keep[:, None], xp.asarray(soft, dtype=logp.dtype), 0.0)  # (N, V): ignored rows never read
    expected = (1.0 - soft_weight) * picked + soft_weight * (soft * logp).sum(axis=1)  # (N,) Σ_v q log p
    loss = -(expected * keep).sum() / count
    return loss, (logp, safe, keep, count, soft, soft_weight, label_smoothing)


def cross_entropy_backward(dloss, cache):
    """dloss: scalar upstream gradient -> dlogits (N, V)."""
    xp = array_module(cache[0])
    logp, safe, keep, count, soft, soft_weight, label_smoothing = cache
    dz = xp.exp(logp)  # softmax, (N, V)
    hard = 1.0 - soft_weight  # the weight of h = (1 - ε) onehot + ε / V in q
    dz[xp.arange(dz.shape[0]), safe] -= hard * (1.0 - label_smoothing)  # λ = ε = 0: exactly 1.0
    if label_smoothing:
        dz -= hard * label_smoothing / dz.shape[1]
    if soft is not None:
        dz -= soft_weight * soft
    dz *= (keep[:, None] * (dloss / count)).astype(dz.dtype)
    return dz
