"""The PyTorch twin of minis2s's AttentionSeq2Seq (minis2s/models/attention.py), written
independently from its docstring: the same parameter names and order, so state dicts move both
ways, and the same teacher-forcing path (the flips are replayed).

The encoder is torch's own bidirectional nn.LSTM on a packed sequence; the attention scores are
written the direct way (``qᵀ W k``, ``vᵀ tanh(W_q q + W_k k)`` per step, no precomputed keys) and
padding is masked with ``masked_fill(-inf)`` before torch's softmax — a different route to the
same numbers as minis2s's split keys/step ops and ``where``-masked softmax.

Shapes: S source, T target steps, B batch, L layers, He encoder hidden per direction, Hk = 2He,
H decoder hidden, E embedding, V target vocabulary, A attention size (= H).
"""
import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class TorchAttention(nn.Module):
    def __init__(self, kind, query_size, key_size, attention_size):
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            self.weight_query = nn.Parameter(torch.empty(attention_size, query_size).uniform_(-1, 1) / math.sqrt(query_size))
            self.weight_key = nn.Parameter(torch.empty(attention_size, key_size).uniform_(-1, 1) / math.sqrt(key_size))
            self.v = nn.Parameter(torch.empty(attention_size).uniform_(-1, 1) / math.sqrt(attention_size))
        elif kind == "general":
            self.weight = nn.Parameter(torch.empty(query_size, key_size).uniform_(-1, 1) / math.sqrt(key_size))

    def forward(self, query, keys, mask):
        """query (B, Hq), keys (S, B, Hk), mask (S, B) bool -> context (B, Hk), weights (S, B)."""
        if self.kind == "bahdanau":
            u = torch.tanh(query @ self.weight_query.T + keys @ self.weight_key.T)  # (S, B, A)
            scores = u @ self.v  # (S, B)
        elif self.kind == "general":
            scores = torch.einsum("bq,qk,sbk->sb", query, self.weight, keys)
        else:
            scores = torch.einsum("bh,sbh->sb", query, keys)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=0)  # (S, B)
        context = (weights.unsqueeze(2) * keys).sum(0)  # (B, Hk)
        return context, weights


class TorchAttentionEncoder(nn.Module):
    def __init__(self, input_dim, hidden_dim, embedding_dim, num_layers):
        super().__init__()
        self.embedding = nn.Embedding(input_dim, embedding_dim)
        self.rnn = nn.LSTM(embedding_dim, hidden_dim, num_layers=num_layers, bidirectional=True)

    def forward(self, src, src_lengths):
        embedded = self.embedding(src)  # (S, B, E)
        packed = pack_padded_sequence(embedded, src_lengths, enforce_sorted=False)
        outputs, (h_n, c_n) = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, total_length=src.shape[0])  # (S, B, 2He), 0 at padding
        return outputs, h_n, c_n  # h_n, c_n (2L, B, He)


class TorchAttentionDecoder(nn.Module):
    def __init__(self, output_dim, hidden_dim, embedding_dim, num_layers, key_dim, attention, input_feeding):
        super().__init__()
        self.output_dim = output_dim
        self.input_feeding = input_feeding
        self.embedding = nn.Embedding(output_dim, embedding_dim)
        self.rnn = nn.LSTM(embedding_dim + (hidden_dim if input_feeding else 0), hidden_dim, num_layers=num_layers)
        self.attention = TorchAttention(attention, hidden_dim, key_dim, hidden_dim)
        self.attn_out = nn.Linear(key_dim + hidden_dim, hidden_dim)
        self.fc_out = nn.Linear(hidden_dim, output_dim)

    def forward(self, input, hidden, cell, feed, keys, mask):
        x = self.embedding(input)  # (B, E)
        if self.input_feeding:
            x = torch.cat([x, feed], dim=1)  # (B, E + H)
        output, (hidden, cell) = self.rnn(x.unsqueeze(0), (hidden, cell))
        query = output.squeeze(0)  # (B, H)
        context, weights = self.attention(query, keys, mask)
        attentional = torch.tanh(self.attn_out(torch.cat([context, query], dim=1)))  # (B, H)
        return self.fc_out(attentional), hidden, cell, attentional, weights


class TorchAttentionSeq2Seq(nn.Module):
    def __init__(self, src_vocab, trg_vocab, enc_hidden, dec_hidden, embedding, num_layers,
                 attention="general", input_feeding=True):
        super().__init__()
        self.num_layers = num_layers
        self.encoder = TorchAttentionEncoder(src_vocab, enc_hidden, embedding, num_layers)
        self.bridge_h = nn.Linear(2 * enc_hidden, dec_hidden)
        self.bridge_c = nn.Linear(2 * enc_hidden, dec_hidden)
        self.decoder = TorchAttentionDecoder(trg_vocab, dec_hidden, embedding, num_layers, 2 * enc_hidden,
                                             attention, input_feeding)

    def join(self, state):
        """(2L, B, He) -> (L, B, 2He): [forward; reverse] of each layer."""
        return torch.cat([state[0::2], state[1::2]], dim=2)

    def forward(self, src, trg, src_lengths, flips):
        """src (S, B), trg (T, B), src_lengths (B,), flips: T-1 bools -> outputs (T, B, V),
        weights (T, S, B)."""
        S, (T, B) = src.shape[0], trg.shape
        keys, h_n, c_n = self.encoder(src, src_lengths)
        hidden = torch.tanh(self.bridge_h(self.join(h_n)))  # (L, B, H)
        cell = torch.tanh(self.bridge_c(self.join(c_n)))
        mask = torch.arange(S).unsqueeze(1) < src_lengths.unsqueeze(0)  # (S, B)
        feed = torch.zeros(B, hidden.shape[2], dtype=hidden.dtype)
        outputs = torch.zeros(T, B, self.decoder.output_dim, dtype=hidden.dtype)
        all_weights = torch.zeros(T, S, B, dtype=hidden.dtype)
        input = trg[0]
        for t in range(1, T):
            output, hidden, cell, feed, weights = self.decoder(input, hidden, cell, feed, keys, mask)
            outputs[t] = output
            all_weights[t] = weights
            input = trg[t] if flips[t - 1] else output.argmax(1)
        return outputs, all_weights
