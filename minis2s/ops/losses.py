"""Softmax cross-entropy with padding, PyTorch's F.cross_entropy(..., ignore_index, 'mean').

    log p = z - max(z) - log Σ exp(z - max(z))          (stable: no exp of a large number)
    loss  = -(1/N) Σ_{n: y_n ≠ ignore} log p[n, y_n]     N = number of non-ignored targets
    dz    = (softmax(z) - onehot(y)) / N,  zero on ignored rows
"""
from minis2s.backend import array_module


def log_softmax(z, axis=-1):
    xp = array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def cross_entropy_forward(logits, targets, ignore_index=-100):
    """logits: (N, V), targets: (N,) ints in [0, V) or == ignore_index -> scalar loss, cache.

    Raises ValueError when every target is ignored (PyTorch returns NaN there).
    """
    xp = array_module(logits)
    targets = xp.asarray(targets)  # NumPy targets for CuPy logits go to the GPU (no-op on CPU)
    keep = targets != ignore_index  # (N,)
    count = int(keep.sum())
    if count == 0:
        raise ValueError("targets: every target equals ignore_index, so the mean loss is undefined")
    logp = log_softmax(logits, axis=1)  # (N, V)
    safe = xp.where(keep, targets, 0)
    picked = logp[xp.arange(logits.shape[0]), safe]  # (N,)
    loss = -(picked * keep).sum() / count
    return loss, (logp, safe, keep, count)


def cross_entropy_backward(dloss, cache):
    """dloss: scalar upstream gradient -> dlogits (N, V)."""
    xp = array_module(cache[0])
    logp, safe, keep, count = cache
    dz = xp.exp(logp)  # softmax, (N, V)
    dz[xp.arange(dz.shape[0]), safe] -= 1.0
    dz *= (keep[:, None] * (dloss / count)).astype(dz.dtype)
    return dz
