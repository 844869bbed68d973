"""The PyTorch seq2seq skeleton minis2s completes (the blog post's Encoder, Decoder and Seq2Seq),
with its forward completed: the twin minis2s is checked against.

Encoder and Decoder are the skeleton's own classes (tests/data/seed_skeleton.py, imported).
``Seq2Seq.forward`` is the standard completion of the skeleton's empty forward, with one
addition: it takes the list of coin flips
to replay (minis2s records them in ``model.teacher_forcing_flips``), so both models take the
same teacher-forcing path. ``GRU``/``RNN`` variants (``cell=`` in minis2s) swap nn.LSTM for
nn.GRU/nn.RNN and carry ``cell=None``; the same Seq2Seq drives them.

Shapes: S source steps, T target steps, B batch, L layers, H hidden, V target vocabulary.
"""
# ruff: noqa: PLR0402, RUF059  (the skeleton's style: import torch.nn as nn, unused outputs)
import importlib.util
import os
import random

import torch
import torch.nn as nn


def _skeleton():
    """tests/data/seed_skeleton.py, the user's file byte for byte, imported by its path."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "seed_skeleton.py")
    spec = importlib.util.spec_from_file_location("seed_skeleton_for_torch_seed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SKELETON = _skeleton()
Encoder = _SKELETON.Encoder  # the skeleton's classes themselves, not copies
Decoder = _SKELETON.Decoder


class Seq2Seq(_SKELETON.Seq2Seq):
    """The skeleton's Seq2Seq with its empty forward written out."""

    def forward(self, src, trg, teacher_forcing_ratio=0.5, flips=None):
        """src: (S, B), trg: (T, B) -> outputs (T, B, V), outputs[0] zeros.

        flips: one bool per step t = 1..T-1 ("feed trg[t] next"), replayed instead of drawing
        ``random.random() < teacher_forcing_ratio``.
        """
        trg_len, batch_size = trg.shape
        trg_vocab_size = self.decoder.output_dim
        dtype = self.decoder.fc_out.weight.dtype
        outputs = torch.zeros(trg_len, batch_size, trg_vocab_size, dtype=dtype).to(self.device)
        hidden, cell = self.encoder(src)
        input = trg[0, :]  # <sos>
        for t in range(1, trg_len):
            output, hidden, cell = self.decoder(input, hidden, cell)
            outputs[t] = output
            teacher_force = flips[t - 1] if flips is not None else random.random() < teacher_forcing_ratio
            top1 = output.argmax(1)
            input = trg[t] if teacher_force else top1
        return outputs


# ---- GRU / RNN twins of minis2s's ``cell="gru"`` / ``cell="rnn"`` ------------------------------

SINGLE_STATE_RNNS = {"gru": nn.GRU, "rnn": nn.RNN}


class SingleStateEncoder(Encoder):
    """The skeleton's Encoder with nn.GRU or nn.RNN; returns (hidden, None)."""

    def __init__(self, input_dim, hidden_dim, embedding_dim, num_layers, cell="gru"):
        super().__init__(input_dim, hidden_dim, embedding_dim, num_layers)
        self.rnn = SINGLE_STATE_RNNS[cell](embedding_dim, hidden_dim, num_layers=num_layers)

    def forward(self, src):
        embedded = self.embedding(src)  # (S, B, E)
        outputs, hidden = self.rnn(embedded)
        return hidden, None


class SingleStateDecoder(Decoder):
    """The skeleton's Decoder with nn.GRU or nn.RNN; ``cell`` passes through as None."""

    def __init__(self, output_dim, hidden_dim, embedding_dim, num_layers, cell="gru"):
        super().__init__(output_dim, hidden_dim, embedding_dim, num_layers)
        self.rnn = SINGLE_STATE_RNNS[cell](embedding_dim, hidden_dim, num_layers=num_layers)

    def forward(self, input, hidden, cell=None):
        embedded = self.embedding(input.unsqueeze(0))  # (1, B, E)
        output, hidden = self.rnn(embedded, hidden)
        prediction = self.fc_out(output.squeeze(0))  # (B, V)
        return prediction, hidden, None


def make_seed_model(src_vocab, trg_vocab, hidden, embedding, num_layers, cell="lstm",
                    dtype=torch.float64):
    """A torch Seq2Seq with the skeleton's constructor signatures, in ``dtype``."""
    if cell == "lstm":
        enc = Encoder(src_vocab, hidden, embedding, num_layers)
        dec = Decoder(trg_vocab, hidden, embedding, num_layers)
    else:
        enc = SingleStateEncoder(src_vocab, hidden, embedding, num_layers, cell=cell)
        dec = SingleStateDecoder(trg_vocab, hidden, embedding, num_layers, cell=cell)
    return Seq2Seq(enc, dec, "cpu").to(dtype)
