"""Affine map y = x Wᵀ + b over the last axis (PyTorch's nn.Linear layout: W is (out, in))."""


def linear_forward(x, weight, bias=None):
    """x: (..., in), weight: (out, in), bias: (out,) or None -> y (..., out), cache."""
    y = x @ weight.T  # (..., out)
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(dy, cache):
    """dy: (..., out) -> dx (..., in), dweight (out, in), dbias (out,) or None."""
    x, weight, has_bias = cache
    dy2 = dy.reshape(-1, dy.shape[-1])  # (N, out)
    x2 = x.reshape(-1, x.shape[-1])  # (N, in)
    dx = dy @ weight  # (..., in)
    dweight = dy2.T @ x2  # (out, in): one GEMM over every row
    dbias = dy2.sum(axis=0) if has_bias else None
    return dx, dweight, dbias
