# ruff: noqa: F401  (this file re-exports the ops; __all__ is built from them below)
"""Pure forward/backward functions: the float64-exact reference of every op in minis2s.

Each ``*_forward`` returns ``(output, cache)``; each ``*_backward`` takes the upstream gradient
and that cache and returns gradients. No op keeps state between calls. Shape legend used in
every file: T time, B batch, I input features, E embedding, H hidden, G gates*H, V vocabulary.
"""
from minis2s.ops.activations import sigmoid
from minis2s.ops.attention import (
    ATTENTION_PARAMS,
    attention_backward,
    attention_forward,
    attention_keys_backward,
    attention_keys_forward,
    attention_step_backward,
    attention_step_forward,
    masked_softmax_backward,
    masked_softmax_forward,
)
from minis2s.ops.dropout import dropout_backward, dropout_forward
from minis2s.ops.embedding import embedding_backward, embedding_forward
from minis2s.ops.gru import GRU_CELL, gru_cell_backward, gru_cell_forward, gru_step_backward, gru_step_forward
from minis2s.ops.linear import linear_backward, linear_forward
from minis2s.ops.losses import cross_entropy_backward, cross_entropy_forward, log_softmax
from minis2s.ops.lstm import (
    LSTM_CELL,
    lstm_backward,
    lstm_cell_backward,
    lstm_cell_forward,
    lstm_forward,
    lstm_step_backward,
    lstm_step_forward,
)
from minis2s.ops.recurrent import (
    CellType,
    RecurrentCache,
    Steps,
    recurrent_backward,
    recurrent_forward,
    reverse_time,
    reverse_time_index,
    step_rows,
    weight_gradients,
)
from minis2s.ops.rnn import RNN_CELL, rnn_cell_backward, rnn_cell_forward, rnn_step_backward, rnn_step_forward

# The recurrent cells by name (nn's LSTM, GRU and RNN pick theirs here): one literal table, not a
# registry that importing lstm.py, gru.py and rnn.py fills as a side effect.
CELLS: dict[str, CellType] = {"lstm": LSTM_CELL, "gru": GRU_CELL, "rnn_tanh": RNN_CELL}

__all__ = [name for name in dir() if not name.startswith("_")]
