"""Pointwise activations shared by the recurrent cells."""
from minis2s.backend import array_module


def sigmoid(x):
    """σ(x) = 1 / (1 + e^-x), written as ½(1 + tanh(x/2)): the same function, but it never
    overflows for large |x| (e^-x does) and keeps the input's dtype."""
    xp = array_module(x)
    return 0.5 * (xp.tanh(0.5 * x) + 1.0)
