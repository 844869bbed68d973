"""Seq2Seq with attention: a bidirectional encoder, a bridge, and a decoder that attends.

The sibling of ``Seq2Seq`` (minis2s/models/seq2seq.py) with the same API — ``forward(src, trg,
teacher_forcing_ratio, *, src_lengths, generator)`` -> outputs (T, B, V) with outputs[0] = 0,
``backward(doutputs)``, and the decoding interface of minis2s/decode.py — so the training loop,
checkpoints, greedy decoding and beam search take either model.

Flow of one batch (S source, T target steps, B batch, L layers, He encoder hidden per direction,
Hk = 2He, H decoder hidden, V target vocabulary):

    src (S, B) -> AttentionEncoder (bidirectional LSTM)
        keys (S, B, Hk) = [forward | reverse] outputs;  h_n, c_n (2L, B, He)
    bridge:   h_0 = tanh(W_h [h_n fwd; h_n rev] + b_h)   c_0 = tanh(W_c [c_n fwd; c_n rev] + b_c)
              per layer, (L, B, Hk) -> (L, B, H); the same two Linear layers for every layer
    for t in 1..T-1 (Luong et al. 2015's global attention, with their input feeding):
        x_t   = [emb(y_{t-1}); h̃_{t-1}]                (h̃_0 = 0; without input feeding x_t = emb)
        h_t   = LSTM(x_t, state)                        (B, H), the top layer's output
        c_t, a_t = attention(h_t, keys, mask)           (B, Hk), (S, B): a_t = 0 on padding
        h̃_t   = tanh(W_a [c_t; h_t] + b_a)              (B, H)   ``attn_out``
        logits = fc_out(dropout(h̃_t))                   (B, V)

The attention score is Bahdanau's additive one or Luong's dot/general (minis2s/ops/attention.py);
the decoder's flow is Luong's for all three (as OpenNMT's global attention). The weights of the
last ``forward`` are kept in ``model.attention_weights`` (T, S, B) for inspection (row 0 zero).

Decoder state (``init_decoder_state``, ``decode_step``): the tuple (hidden (L, B, H), c
(L, B, H), feed (1, B, H) or None, keys (S, B, Hk), proj, mask (S, B)) — every entry has the
batch on axis 1, so ``select_state`` reorders the encoder outputs and mask with the beams.
"""
from __future__ import annotations

import numpy as np

from minis2s.models.seq2seq import Seq2Seq, check_forward_inputs, pad_rows
from minis2s.nn import LSTM, Attention, Dropout, Embedding, Linear, Module
from minis2s.ops.recurrent import length_mask, step_rows
from minis2s.threads import model_call, recurrent_step_macs
from minis2s.validate import check_float_array, check_ids


class AttentionEncoder(Module):
    """Embeddings and a bidirectional LSTM; its outputs are the attention's keys."""

    def __init__(self, input_dim, hidden_dim, embedding_dim, num_layers, *, dropout=0.0, dtype=None, rng=None):
        super().__init__()
        self.hidden_dim = hidden_dim  # per direction
        self.embedding = Embedding(input_dim, embedding_dim, dtype=dtype, rng=rng)
        self.rnn = LSTM(embedding_dim, hidden_dim, num_layers, dropout=dropout, bidirectional=True, dtype=dtype,
                        rng=rng)
        self.dropout = Dropout(dropout)

    def forward(self, src, src_lengths=None, *, generator=None):
        """src: (S, B) ids -> outputs (S, B, 2He) (zero at padding), (h_n, c_n) each (2L, B, He)."""
        src = check_ids("src", src, self.embedding.num_embeddings, ndim=2)
        embedded = self.dropout(self.embedding(src), generator)  # (S, B, E)
        return self.rnn(embedded, lengths=src_lengths)

    def backward(self, doutputs, dh_n, dc_n):
        """Gradients of outputs (S, B, 2He) and final states (2L, B, He) -> parameters."""
        demb = self.rnn.backward(doutputs, dh_n, dc_n)
        self.embedding.backward(self.dropout.backward(demb))


class AttentionDecoder(Module):
    """One step of the attentional decoder (see the module docstring)."""

    def __init__(self, output_dim, hidden_dim, embedding_dim, num_layers, key_dim, *, attention="general",
                 input_feeding=True, dropout=0.0, dtype=None, rng=None):
        super().__init__()
        self.output_dim = output_dim
        self.hidden_dim = hidden_dim
        self.key_dim = key_dim
        self.input_feeding = bool(input_feeding)
        self.embedding = Embedding(output_dim, embedding_dim, dtype=dtype, rng=rng)
        rnn_in = embedding_dim + (hidden_dim if self.input_feeding else 0)
        self.rnn = LSTM(rnn_in, hidden_dim, num_layers, dropout=dropout, dtype=dtype, rng=rng)
        self.attention = Attention(attention, hidden_dim, key_dim, hidden_dim, dtype=dtype, rng=rng)
        self.attn_out = Linear(key_dim + hidden_dim, hidden_dim, dtype=dtype, rng=rng)  # h̃ = tanh(W_a [c; h] + b_a)
        self.fc_out = Linear(hidden_dim, output_dim, dtype=dtype, rng=rng)
        self.dropout = Dropout(dropout)

    def forward(self, input, hidden, c, feed, keys, proj, mask, *, generator=None):
        """input: (B,) ids; hidden, c: (L, B, H); feed: (B, H) (h̃ of the previous step) or
        None without input feeding; keys (S, B, Hk), proj, mask (S, B) from the encoder.

        Returns prediction (B, V), hidden, c, attentional h̃ (B, H), weights (S, B).
        """
        input = check_ids("input", input, self.output_dim, ndim=1)
        xp = self.xp
        x = self.dropout(self.embedding(input), generator)  # (B, E)
        if self.input_feeding:
            x = xp.concatenate([x, feed], axis=1)  # (B, E + H)
        output, (hidden, c) = self.rnn(x[None], (hidden, c), generator=generator)  # (1, B, H)
        query = output[0]  # (B, H)
        context, weights = self.attention(query, keys, proj, mask)  # (B, Hk), (S, B)
        attentional = xp.tanh(self.attn_out(xp.concatenate([context, query], axis=1)))  # (B, H)
        prediction = self.fc_out(self.dropout(attentional, generator))  # (B, V)
        self._push(attentional)
        return prediction, hidden, c, attentional, weights

    def backward(self, dprediction, dhidden=None, dc=None, dattentional=None):
        """dprediction: (B, V); dhidden, dc: (L, B, H) of the returned state; dattentional:
        (B, H), the gradient of h̃ from the next step's input feeding (or None).

        Returns dhidden, dc (L, B, H) and dfeed (B, H) (None without input feeding) of the
        incoming state, dkeys (S, B, Hk) and dproj of this step's attention.
        """
        attentional = self._pop()
        da = self.dropout.backward(self.fc_out.backward(dprediction))  # (B, H)
        if dattentional is not None:
            da = da + dattentional
        dcat = self.attn_out.backward(da * (1.0 - attentional * attentional))  # (B, Hk + H): tanh'
        dcontext, dquery = dcat[:, : self.key_dim], dcat[:, self.key_dim :]
        dq_attention, dkeys, dproj = self.attention.backward(dcontext)
        dout = (dquery + dq_attention)[None]  # (1, B, H)
        dx, (dh0, dc0) = self.rnn.backward(dout, dhidden, dc, return_state_grads=True)
        E = self.embedding.embedding_dim
        dx = dx[0]  # (B, E [+ H])
        self.embedding.backward(self.dropout.backward(dx[:, :E]))
        dfeed = dx[:, E:] if self.input_feeding else None
        return dh0, dc0, dfeed, dkeys, dproj


def join_directions(state, num_layers):
    """(2L, B, He) in torch's order (layer-major, forward then reverse) -> (L, B, 2He)."""
    _, B, He = state.shape
    return state.reshape(num_layers, 2, B, He).transpose(0, 2, 1, 3).reshape(num_layers, B, 2 * He)


def split_directions(joined, num_layers):
    """The inverse of join_directions: (L, B, 2He) -> (2L, B, He)."""
    _, B, H2 = joined.shape
    return joined.reshape(num_layers, B, 2, H2 // 2).transpose(0, 2, 1, 3).reshape(2 * num_layers, B, H2 // 2)


class AttentionSeq2Seq(Module):
    """AttentionEncoder + bridge + AttentionDecoder, with Seq2Seq's API and teacher forcing."""

    def __init__(self, encoder, decoder, device="cpu", *, rng=None):
        super().__init__()
        if not isinstance(encoder, AttentionEncoder) or not isinstance(decoder, AttentionDecoder):
            raise TypeError("AttentionSeq2Seq(encoder, decoder) needs an AttentionEncoder and an AttentionDecoder")
        if decoder.key_dim != 2 * encoder.hidden_dim:
            raise ValueError(f"decoder key_dim {decoder.key_dim} != 2 x encoder hidden_dim {encoder.hidden_dim}")
        if encoder.rnn.num_layers != decoder.rnn.num_layers:
            raise ValueError(
                f"encoder num_layers {encoder.rnn.num_layers} != decoder num_layers {decoder.rnn.num_layers}")
        if encoder.dtype != decoder.dtype:
            raise TypeError(f"encoder dtype {encoder.dtype} != decoder dtype {decoder.dtype}")
        self.encoder = encoder
        self.bridge_h = Linear(decoder.key_dim, decoder.hidden_dim, dtype=encoder.dtype, rng=rng)
        self.bridge_c = Linear(decoder.key_dim, decoder.hidden_dim, dtype=encoder.dtype, rng=rng)
        self.decoder = decoder
        self.teacher_forcing_flips: list[bool] = []
        self.attention_weights = None  # (T, S, B) after a forward
        self.to(device=device)  # ``self.device`` reads where the parameters are (Module.device)

    # ---- the decoding interface (also the first half of forward) ----------------------------
    @model_call(batch_axis=1)
    def init_decoder_state(self, src, src_lengths=None, *, generator=None):
        """Encode ``src`` (S, B) -> the decoder's initial state (see the module docstring)."""
        xp, L = self.xp, self.decoder.rnn.num_layers
        keys, (h_n, c_n) = self.encoder(src, src_lengths, generator=generator)  # (S, B, Hk), (2L, B, He)
        hidden = xp.tanh(self.bridge_h(join_directions(h_n, L)))  # (L, B, H)
        c = xp.tanh(self.bridge_c(join_directions(c_n, L)))  # (L, B, H)
        S, B = keys.shape[:2]
        proj = self.decoder.attention.keys_forward(keys)  # once per batch
        lengths = np.full(B, S) if src_lengths is None else src_lengths
        mask = length_mask(lengths, S, keys.dtype, xp)[:, :, 0] > 0  # (S, B) bool
        feed = xp.zeros((1, B, self.decoder.hidden_dim), dtype=keys.dtype) if self.decoder.input_feeding else None
        self._push((hidden, c))  # the bridge's tanh, for backward
        return (hidden, c, feed, keys, proj, mask)

    def _step(self, input, state, generator=None):
        """input: (B,) ids -> logits (B, V), the new state, attention weights (S, B)."""
        hidden, c, feed, keys, proj, mask = state
        logits, hidden, c, attentional, weights = self.decoder(
            input, hidden, c, None if feed is None else feed[0], keys, proj, mask, generator=generator)
        feed = attentional[None] if self.decoder.input_feeding else None  # (1, B, H)
        return logits, (hidden, c, feed, keys, proj, mask), weights

    @model_call(batch_axis=0)
    def decode_step(self, input, state):
        """input: (B,) ids; state from init_decoder_state -> logits (B, V), new state."""
        logits, state, _ = self._step(input, state)
        return logits, state

    select_state = staticmethod(Seq2Seq.select_state)

    # ---- training ---------------------------------------------------------------------------
    def step_macs(self, batch: int) -> int:
        """The size that picks this model's BLAS threads (minis2s/threads.py): a decoder step."""
        return recurrent_step_macs(self.decoder.rnn, batch)

    @model_call(batch_axis=1)
    def forward(self, src, trg, teacher_forcing_ratio=0.5, *, src_lengths=None, generator=None,
                dropout_generator=None, trg_lengths=None):
        """src: (S, B), trg: (T, B) ids, trg[0] the start token -> outputs (T, B, V), outputs[0] = 0.

        Teacher forcing and dropout as ``Seq2Seq.forward`` (one coin per step, kept in
        ``teacher_forcing_flips``; masks from ``dropout_generator``); the attention weights go to
        ``attention_weights`` (T, S, B). ``trg_lengths`` (B,), as ``Seq2Seq.forward`` takes it:
        each row stops at its length, teacher-forced or not — step t runs the rows up to the last
        one with trg_lengths > t (all the rows still running once they are sorted longest
        first, as ``make_batches`` sorts them), and a stopped row's outputs and weights stay 0
        and take no gradient.
        """
        src, trg, src_lengths, trg_lengths, flips = check_forward_inputs(
            src, trg, teacher_forcing_ratio, src_lengths, generator,
            self.encoder.embedding.num_embeddings, self.decoder.output_dim, trg_lengths)
        self.clear_tape()  # a previous forward that was never backpropagated
        self.teacher_forcing_flips = flips
        xp = self.xp
        (S, B), T = src.shape, trg.shape[0]
        state = self.init_decoder_state(src, src_lengths, generator=dropout_generator)
        proj_shape = state[4].shape
        # rows[t - 1]: the rows step t runs, a prefix that only shrinks (ops.step_rows)
        rows = np.full(T - 1, B) if trg_lengths is None else step_rows(trg_lengths - 1, T - 1, B)
        outputs = xp.zeros((T, B, self.decoder.output_dim), dtype=self.dtype)  # (T, B, V)
        weights = xp.zeros((T, S, B), dtype=self.dtype)  # (T, S, B)
        input = trg[0]  # (B,) <sos>
        for t in range(1, T):
            n = int(rows[t - 1])
            if n == 0:  # every row has stopped (trg has more padded steps than any row needs)
                break
            if n < input.shape[0]:  # rows n.. have stopped: the state of the others, contiguous
                state, input = self.select_state(state, np.arange(n)), input[:n]
            outputs[t, :n], state, weights[t, :, :n] = self._step(input, state, dropout_generator)
            input = trg[t, :n] if flips[t - 1] else outputs[t, :n].argmax(axis=1)
        live = None  # (T - 1, B, 1): 1 where a row still runs (rows before the last running one ran regardless)
        if trg_lengths is not None:
            live = length_mask(trg_lengths - 1, T - 1, self.dtype, xp)
            outputs[1:] *= live
            weights[1:] *= live[:, None, :, 0]
        self.attention_weights = weights
        self._push((T, proj_shape, outputs.shape, rows, live))
        return outputs

    @model_call(batch_axis=1)
    def backward(self, doutputs):
        """doutputs: (T, B, V) (row 0 unused) -> gradients accumulate into every parameter."""
        T, proj_shape, shape, rows, live = self._pop()
        check_float_array("doutputs", doutputs, ndim=3, shape=shape)
        if live is not None:  # the stopped rows' outputs were zeroed: no gradient through them
            doutputs = doutputs.copy()
            doutputs[1:] *= live
        hidden, c = self._pop()
        xp, L = self.xp, self.decoder.rnn.num_layers
        dh = dc = dfeed = None
        dkeys = xp.zeros((proj_shape[0], shape[1], self.decoder.key_dim), dtype=doutputs.dtype)  # (S, B, Hk)
        dproj = xp.zeros(proj_shape, dtype=doutputs.dtype)
        for t in reversed(range(1, T)):
            n = int(rows[t - 1])
            if n == 0:  # a step that never ran (see forward)
                continue
            # the state gradients of step t + 1's rows; the rows that stopped after step t get 0
            dh, dc = (None if g is None else pad_rows(g, n) for g in (dh, dc))  # (L, n, H)
            dfeed = None if dfeed is None else pad_rows(dfeed, n, axis=0)  # (n, H)
            dh, dc, dfeed, dk, dp = self.decoder.backward(doutputs[t, :n], dh, dc, dfeed)
            dkeys[:, :n] += dk
            dproj[:, :n] += dp
        dh, dc = pad_rows(dh, shape[1]), pad_rows(dc, shape[1])
        dkeys += self.decoder.attention.keys_backward(dproj)
        dh_n = split_directions(self.bridge_h.backward(dh * (1.0 - hidden * hidden)), L)  # (2L, B, He)
        dc_n = split_directions(self.bridge_c.backward(dc * (1.0 - c * c)), L)
        self.encoder.backward(dkeys, dh_n, dc_n)
