"""Modules built on minis2s.ops: PyTorch's names, parameter layouts and state-dict keys."""
from minis2s.nn.attention import Attention
from minis2s.nn.layers import CrossEntropyLoss, Dropout, Embedding, Linear
from minis2s.nn.module import Module, Parameter, is_grad_enabled, no_grad
from minis2s.nn.recurrent import GRU, LSTM, RNN, RNNBase

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Attention",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Linear",
    "Module",
    "Parameter",
    "RNNBase",
    "is_grad_enabled",
    "no_grad",
]
