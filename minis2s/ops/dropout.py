"""Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p), so the
expected value is unchanged and evaluation needs no rescaling (PyTorch's convention)."""


def dropout_forward(x, p, rng):
    """x: any shape, p in [0, 1), rng: numpy Generator -> out, cache (the scaled keep-mask)."""
    if p == 0.0:
        return x, None
    keep = rng.random(x.shape) >= p  # drawn on the host so a seed replays the same mask
    mask = keep.astype(x.dtype) / (1.0 - p)
    if type(x).__module__.split(".")[0] == "cupy":  # pragma: no cover - GPU only
        import cupy

        mask = cupy.asarray(mask)
    return x * mask, mask


def dropout_backward(dout, cache):
    mask = cache
    return dout if mask is None else dout * mask
