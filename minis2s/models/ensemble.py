"""Several trained models decoding as one: at every step, the mean of their distributions.

    p(y_t | y_<t, x) = (1/M) Σ_m p_m(y_t | y_<t, x)

Each member runs its own encoder and decoder state; all of them are fed the ensemble's choice
of y_{t-1}, so they decode one shared hypothesis. The arithmetic mean of probabilities, not the mean of
log-probabilities (a product of experts): for the shipped G2P models it is the better of the
two on the dev split (measured in the README's G2P section).

``Ensemble`` offers the decoding interface of ``Seq2Seq`` (``init_decoder_state``,
``decode_step``, ``select_state``), so ``greedy_decode`` and ``beam_search`` take it unchanged.
It only decodes: it has no forward/backward and nothing to train.
"""
from __future__ import annotations

import numpy as np

from minis2s.backend import to_numpy
from minis2s.ops import log_softmax
from minis2s.ops.recurrent import reverse_time_index

_INTERFACE = ("init_decoder_state", "decode_step", "select_state")


class Ensemble:
    """``Ensemble(models, reverse_source=None)``: ``models`` decode with the mean of their
    next-token distributions. ``reverse_source[m]``: member m reads each source row reversed
    (within its own length), as the ``seq2seq`` G2P model was trained to; the ensemble is given
    sources in reading order."""

    def __init__(self, models, reverse_source=None):
        models = list(models)
        if not models:
            raise ValueError("models is empty: an ensemble needs at least one model")
        for i, m in enumerate(models):
            missing = [name for name in _INTERFACE if not callable(getattr(m, name, None))]
            if missing:
                raise TypeError(f"models[{i}] ({type(m).__name__}) lacks the decoding interface: {missing}")
        sizes = {int(m.decoder.output_dim) for m in models if hasattr(m, "decoder")}
        if len(sizes) > 1:
            raise ValueError(f"the models predict different vocabularies (output sizes {sorted(sizes)})")
        if reverse_source is None:
            reverse_source = [False] * len(models)
        reverse_source = [bool(r) for r in reverse_source]
        if len(reverse_source) != len(models):
            raise ValueError(f"reverse_source has {len(reverse_source)} entries for {len(models)} models")
        self.models, self.reverse_source = models, reverse_source

    def __len__(self):
        return len(self.models)

    def init_decoder_state(self, src, src_lengths=None):
        """src: (S, B) ids in reading order -> one initial state per member."""
        src = np.asarray(src)
        S, B = src.shape
        flipped = None
        if any(self.reverse_source):  # (S, B): each row reversed within its own length
            flipped = src[reverse_time_index(S, B, src_lengths, np), np.arange(B)[None, :]]
        return tuple(m.init_decoder_state(flipped if r else src, src_lengths)
                     for m, r in zip(self.models, self.reverse_source))

    def decode_step(self, input, state):
        """input: (B,) ids -> (log p (B, V) float64, the members' new states).

        log p is returned in place of logits: it is already normalised, so the log-softmax that
        beam search applies leaves it as it is, and its argmax is greedy decoding's choice."""
        logps, new_state = [], []
        for m, s in zip(self.models, state):
            logits, s = m.decode_step(input, s)
            logps.append(to_numpy(log_softmax(logits, axis=1)).astype(np.float64))  # (B, V)
            new_state.append(s)
        logps = np.stack(logps)  # (M, B, V)
        top = logps.max(axis=0)  # log-mean-exp, shifted so that no exp overflows or underflows all
        return top + np.log(np.exp(logps - top).mean(axis=0)), tuple(new_state)

    def select_state(self, state, index):
        """Rows ``index`` of every member's state (beam reordering/expansion)."""
        return tuple(m.select_state(s, index) for m, s in zip(self.models, state))
