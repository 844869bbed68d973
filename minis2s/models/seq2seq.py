"""Encoder, Decoder and Seq2Seq: the reversed-source LSTM encoder-decoder (Sutskever et al. 2014)
of a PyTorch seq2seq skeleton, completed in NumPy (its PyTorch twin: tests/torch_seed.py).

The skeleton's positional signatures, its attribute names — so the same state-dict keys
(``encoder.embedding.weight``, ``encoder.rnn.weight_ih_l0``, ..., ``decoder.fc_out.bias``) — and
the same time-first layout. Extras are keywords: ``dropout`` (on embeddings and between layers),
``cell`` (the cell type: "lstm", "gru" or "rnn"), ``dtype``. Inside, the recurrent state is one
tuple whatever the cell type (``RNNBase.forward_states``); the interface keeps the original
(hidden, c) pair, c None for GRU and RNN.

Flow of one batch (S source steps, T target steps, B batch, V target vocabulary):

    src (S, B) -> Encoder -> (hidden, c) each (L, B, H)   (c: the LSTM's cell state, else None)
    for t in 1..T-1:   input_t = trg[t-1] (teacher forcing) or argmax of the previous output
        Decoder(input_t, hidden, c) -> prediction (B, V), hidden, c
    outputs (T, B, V), outputs[0] = 0 (trg[0] is <sos>, never predicted)

Backward walks the same steps in reverse: each decoder step returns the gradient of its
incoming (hidden, c), the last of which is the gradient of the encoder's final state.
"""
from __future__ import annotations

import numpy as np

from minis2s.backend import array_module
from minis2s.nn import GRU, LSTM, RNN, Dropout, Embedding, Linear, Module
from minis2s.ops.recurrent import length_mask, step_rows
from minis2s.random import default_rng
from minis2s.threads import model_call, recurrent_step_macs
from minis2s.validate import check_float_array, check_ids, check_lengths, check_probability

RNN_TYPES = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


def _rnn_class(cell: str):
    if cell not in RNN_TYPES:
        raise ValueError(f"cell must be one of {sorted(RNN_TYPES)}, got {cell!r}")
    return RNN_TYPES[cell]


def padded_state(state):
    """An RNN state tuple -> (hidden, c): the LSTM's (h, c) as it is, (h,) as (h, None)."""
    return (state[0], state[1] if len(state) > 1 else None)


def pad_rows(a, n, axis=1):
    """a with m <= n rows on ``axis`` (the batch) -> n rows there, zeros after row m: the
    gradient of the rows a decoder step did not run (minis2s/models: ``trg_lengths``)."""
    m = a.shape[axis]
    if m == n:
        return a
    out = array_module(a).zeros(a.shape[:axis] + (n,) + a.shape[axis + 1 :], dtype=a.dtype)
    out[(slice(None),) * axis + (slice(0, m),)] = a
    return out


def check_forward_inputs(src, trg, teacher_forcing_ratio, src_lengths, generator, src_vocab, trg_vocab,
                         trg_lengths=None):
    """The checks of a model's ``forward(src, trg, ratio, src_lengths=, generator=, trg_lengths=)``
    and its teacher-forcing coins: one flip per decoder step (T-1 of them), True with
    probability ``teacher_forcing_ratio``; the flip of step t decides step t+1's input.

    Returns src, trg, src_lengths, trg_lengths, flips.
    """
    teacher_forcing_ratio = check_probability("teacher_forcing_ratio", teacher_forcing_ratio)
    src = check_ids("src", src, src_vocab, ndim=2)
    trg = check_ids("trg", trg, trg_vocab, ndim=2)
    if src.shape[1] != trg.shape[1]:
        raise ValueError(f"src has batch {src.shape[1]} but trg has batch {trg.shape[1]}")
    if src_lengths is not None:
        src_lengths = check_lengths("src_lengths", src_lengths, src.shape[1], src.shape[0])
    if generator is None:  # minis2s's own seeded generator (manual_seed), never an unseeded one
        generator = default_rng()
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator, got {type(generator).__name__}")
    if trg.shape[0] < 2:
        raise ValueError(f"trg must have at least 2 steps (<sos> and one target), got shape {trg.shape}")
    if trg_lengths is not None:
        trg_lengths = check_lengths("trg_lengths", trg_lengths, trg.shape[1], trg.shape[0])
        if int(trg_lengths.min()) < 2:
            raise ValueError(f"trg_lengths must be >= 2 (<sos> and one target), got {int(trg_lengths.min())}")
    flips = [bool(generator.random() < teacher_forcing_ratio) for _ in range(trg.shape[0] - 1)]
    return src, trg, src_lengths, trg_lengths, flips


class Encoder(Module):
    """Embeds the source and runs it through the RNN; its final state is the context."""

    def __init__(self, input_dim, hidden_dim, embedding_dim, num_layers, *, dropout=0.0,
                 cell="lstm", dtype=None, rng=None):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.cell_type = cell
        self.embedding = Embedding(input_dim, embedding_dim, dtype=dtype, rng=rng)
        self.rnn = _rnn_class(cell)(embedding_dim, hidden_dim, num_layers, dropout=dropout, dtype=dtype, rng=rng)
        self.dropout = Dropout(dropout)

    def forward(self, src, src_lengths=None, *, generator=None):
        """src: (S, B) ids; src_lengths: (B,) or None -> hidden (L, B, H), c (L, B, H) or None
        (the LSTM's cell state; GRU and RNN have none). ``generator``: the dropout masks.

        With ``src_lengths`` each row's final state is taken at its own length.
        """
        src = check_ids("src", src, self.embedding.num_embeddings, ndim=2)
        embedded = self.dropout(self.embedding(src), generator)  # (S, B, E)
        _, state = self.rnn.forward_states(embedded, lengths=src_lengths, generator=generator)
        return padded_state(state)

    def backward(self, dhidden, dc=None):
        """Gradients of the final (hidden, c) -> accumulates into every parameter."""
        dout = None  # the encoder's outputs are not used by this model: no gradient
        demb, _ = self.rnn.backward_states(dout, (dhidden, dc)[: self.rnn.cell.n_states])
        self.embedding.backward(self.dropout.backward(demb))


class Decoder(Module):
    """One step: the previous token and state -> a prediction over the target vocabulary."""

    def __init__(self, output_dim, hidden_dim, embedding_dim, num_layers, *, dropout=0.0,
                 cell="lstm", dtype=None, rng=None):
        super().__init__()
        self.output_dim = output_dim
        self.hidden_dim = hidden_dim
        self.cell_type = cell
        self.embedding = Embedding(output_dim, embedding_dim, dtype=dtype, rng=rng)
        self.rnn = _rnn_class(cell)(embedding_dim, hidden_dim, num_layers, dropout=dropout, dtype=dtype, rng=rng)
        self.fc_out = Linear(hidden_dim, output_dim, dtype=dtype, rng=rng)
        self.dropout = Dropout(dropout)

    def forward_sequence(self, inputs, hidden, c=None, *, lengths=None, generator=None):
        """inputs: (T, B) ids, all known in advance (teacher forcing at every step);
        hidden, c: (L, B, H) (c: the LSTM's cell state, None otherwise) -> predictions (T, B, V),
        hidden, c. ``generator``: the dropout masks. ``lengths`` (B,): the steps each row runs;
        past them a row's state stays and its predictions are the output layer's bias.

        The same math as T calls of ``forward``, but the RNN runs the whole sequence (one input
        GEMM for every step) and the output layer is one (T·B, H) x (H, V) GEMM.
        """
        inputs = check_ids("inputs", inputs, self.output_dim, ndim=2)
        embedded = self.dropout(self.embedding(inputs), generator)  # (T, B, E)
        state = None if hidden is None else (hidden, c)[: self.rnn.cell.n_states]
        output, state = self.rnn.forward_states(embedded, state, lengths=lengths, generator=generator)
        predictions = self.fc_out(output)  # (T, B, V)
        return (predictions, *padded_state(state))

    def backward_sequence(self, dpredictions, dhidden=None, dc=None):
        """dpredictions: (T, B, V); dhidden, dc: gradients of the returned state.

        Returns (dhidden, dc) of the incoming state (dc None for GRU/RNN).
        """
        doutput = self.fc_out.backward(dpredictions)  # (T, B, H)
        demb, dstate = self.rnn.backward_states(doutput, (dhidden, dc)[: self.rnn.cell.n_states])
        self.embedding.backward(self.dropout.backward(demb))
        return padded_state(dstate)

    def forward(self, input, hidden, c=None, *, generator=None):
        """One step, the original skeleton's signature. input: (B,) ids; hidden, c: (L, B, H)
        -> prediction (B, V), hidden, c."""
        input = check_ids("input", input, self.output_dim, ndim=1)
        predictions, hidden, c = self.forward_sequence(input[None], hidden, c, generator=generator)
        return predictions[0], hidden, c

    def backward(self, dprediction, dhidden=None, dc=None):
        """dprediction: (B, V) -> (dhidden, dc) of the incoming state."""
        return self.backward_sequence(dprediction[None], dhidden, dc)


class Seq2Seq(Module):
    """Encoder + decoder with teacher forcing: the skeleton's empty ``forward`` written out."""

    def __init__(self, encoder, decoder, device="cpu"):
        super().__init__()
        if not isinstance(encoder, Encoder) or not isinstance(decoder, Decoder):
            raise TypeError("Seq2Seq(encoder, decoder, device) needs a minis2s Encoder and Decoder")
        if encoder.hidden_dim != decoder.hidden_dim:
            raise ValueError(
                f"encoder hidden_dim {encoder.hidden_dim} != decoder hidden_dim {decoder.hidden_dim}"
            )
        if encoder.rnn.num_layers != decoder.rnn.num_layers:
            raise ValueError(
                f"encoder num_layers {encoder.rnn.num_layers} != decoder num_layers {decoder.rnn.num_layers}"
            )
        if encoder.cell_type != decoder.cell_type:
            raise ValueError(f"encoder cell {encoder.cell_type!r} != decoder cell {decoder.cell_type!r}")
        if encoder.dtype != decoder.dtype:
            raise TypeError(f"encoder dtype {encoder.dtype} != decoder dtype {decoder.dtype}")
        self.encoder = encoder
        self.decoder = decoder
        self.teacher_forcing_flips: list[bool] = []
        self.to(device=device)  # ``self.device`` reads where the parameters are (Module.device)

    def step_macs(self, batch: int) -> int:
        """The size that picks this model's BLAS threads (minis2s/threads.py): a decoder step."""
        return recurrent_step_macs(self.decoder.rnn, batch)

    @model_call(batch_axis=1)
    def forward(self, src, trg, teacher_forcing_ratio=0.5, *, src_lengths=None, generator=None,
                dropout_generator=None, trg_lengths=None):
        """src: (S, B), trg: (T, B) integer ids, trg[0] the start token.

        At step t the decoder reads ``trg[t-1]`` if the coin flip of step t-1 says "teach"
        (probability ``teacher_forcing_ratio``), else the argmax of its previous prediction.
        One flip per step for the whole batch, drawn from ``generator`` (a
        ``numpy.random.Generator``; minis2s's seeded one, ``manual_seed``, if None) and kept in
        ``self.teacher_forcing_flips`` so the same forward can be replayed. Dropout masks come
        from ``dropout_generator`` (else each module's own, else minis2s's seeded generator).

        ``trg_lengths`` (B,): each row's length in trg, <sos> and <eos> included (the rest is
        padding). The decoder then stops each row there: outputs[t, b] for t >= trg_lengths[b]
        are 0 and take no gradient, and the work skips the stopped rows (all of them once the
        rows are sorted longest first, as ``make_batches`` sorts them): teacher-forced at every
        step, the recurrence's step GEMMs cover the rows still running (ops.step_rows);
        step by step, each step runs only those rows. A loss that ignores padding gets the same
        value and gradients either way; it is what training passes.

        Returns outputs (T, B, V) with outputs[0] all zeros.
        """
        src, trg, src_lengths, trg_lengths, flips = check_forward_inputs(
            src, trg, teacher_forcing_ratio, src_lengths, generator,
            self.encoder.embedding.num_embeddings, self.decoder.output_dim, trg_lengths)
        self.clear_tape()  # a previous forward that was never backpropagated
        xp = self.xp
        T, B = trg.shape
        self.teacher_forcing_flips = flips
        hidden, c = self.encoder(src, src_lengths, generator=dropout_generator)
        outputs = xp.zeros((T, B, self.decoder.output_dim), dtype=self.dtype)  # (T, B, V)
        steps = None if trg_lengths is None else trg_lengths - 1  # row b predicts trg[1 : trg_lengths[b]]
        rows = np.full(T - 1, B) if steps is None else step_rows(steps, T - 1, B)  # step t runs rows[t - 1]
        # (T - 1, B, 1): 1 where a row still runs. The rows before the last one running are run
        # whether or not they have stopped (unsorted rows): their outputs are zeroed here too.
        live = None if steps is None else length_mask(steps, T - 1, self.dtype, xp)
        sequence_mode = all(flips[:-1])
        if sequence_mode:
            # Every input is a known target token: run the decoder over the whole sequence at
            # once. Same numbers as the step loop below, much less Python per token.
            outputs[1:], _, _ = self.decoder.forward_sequence(trg[:-1], hidden, c, lengths=steps,
                                                              generator=dropout_generator)
        else:
            input = trg[0]  # (B,) <sos>
            for t in range(1, T):
                n = int(rows[t - 1])
                if n == 0:  # every row has stopped
                    break
                if n < input.shape[0]:  # rows n.. have stopped: go on with the others' state
                    (hidden, c), input = self.select_state((hidden, c), np.arange(n)), input[:n]
                output, hidden, c = self.decoder(input, hidden, c, generator=dropout_generator)  # (n, V)
                outputs[t, :n] = output
                input = trg[t, :n] if flips[t - 1] else output.argmax(axis=1)
        if live is not None:  # a stopped row's outputs -> 0 (sequence mode: the output layer's bias)
            outputs[1:] *= live
        self._push((sequence_mode, outputs.shape, rows, live))  # what backward needs, on the tape like every cache
        return outputs

    @model_call(batch_axis=1)
    def backward(self, doutputs):
        """doutputs: (T, B, V), the gradient of the loss w.r.t. ``outputs`` (row 0 is unused).

        Accumulates gradients into every parameter; the argmax feedback is not differentiable
        and gets none.
        """
        if not self._tape:
            raise RuntimeError("Seq2Seq.backward called without a matching forward")
        check_float_array("doutputs", doutputs, ndim=3, shape=self._tape[-1][1])
        sequence_mode, shape, rows, live = self._pop()  # one backward per forward: the caches are used up
        if live is not None:  # the stopped rows' outputs were zeroed: no gradient through them
            doutputs = doutputs.copy()
            doutputs[1:] *= live
        if sequence_mode:
            dhidden, dc = self.decoder.backward_sequence(doutputs[1:])
        else:
            dhidden = dc = None
            for t in reversed(range(1, shape[0])):
                n = int(rows[t - 1])
                if n == 0:  # a step that never ran (see forward)
                    continue
                # the state gradients of step t + 1's rows; the rows that stopped after step t get 0
                dhidden, dc = (None if g is None else pad_rows(g, n) for g in (dhidden, dc))
                dhidden, dc = self.decoder.backward(doutputs[t, :n], dhidden, dc)
            dhidden, dc = (None if g is None else pad_rows(g, shape[1]) for g in (dhidden, dc))
        self.encoder.backward(dhidden, dc)

    # ---- the decoding interface used by minis2s.decode (greedy and beam search) -------------
    @model_call(batch_axis=1)
    def init_decoder_state(self, src, src_lengths=None):
        """Encode ``src`` (S, B): the decoder's initial state, (hidden, c) each (L, B, H)."""
        return self.encoder(src, src_lengths)

    @model_call(batch_axis=0)
    def decode_step(self, input, state):
        """input: (B,) ids; state from init_decoder_state -> logits (B, V), new state."""
        logits, hidden, c = self.decoder(input, *state)
        return logits, (hidden, c)

    @staticmethod
    def select_state(state, index):
        """Rows ``index`` of every state tensor (batch axis 1): beam reordering/expansion, or the rows
        a decoder step still runs (``trg_lengths``)."""
        return tuple(None if s is None else s[:, index] for s in state)
