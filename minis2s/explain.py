"""``minis2s g2p explain WORD``: one word through a G2P model, step by step, and one figure.

    ex = explain(G2P("seq2seq"), "thoughtful")
    print(format_explanation(ex))       # each step's phoneme and its top-5 alternatives
    plot_explanation(ex, "why.png")     # gates, decoder cell, attention, gradient per letter

The model pronounces the word greedily; then one teacher-forced forward along that pronunciation
(the same distributions greedy decoding saw, since its inputs were these very phonemes) runs
inside ``minis2s.trace``, and its backward of the loss, the mean cross-entropy of the model's own
pronunciation, gives the gradient reaching each letter's embedding (the first encoder layer's
traced ``dx``, both directions summed for a bidirectional one).

An ensemble ("ensemble", the default G2P model) is explained as it decides: its probabilities are
the mean of its members' (minis2s/models/ensemble.py), and every member is traced along the
ensemble's pronunciation, so the figure has one row of panels per member.

Shapes: S letters (reading order, also for a model that reads them reversed), T output steps
(the phonemes and <eos>), V phonemes, H hidden units.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minis2s.data import Vocab
from minis2s.g2p import G2P, encode_words
from minis2s.ops import cross_entropy_backward, cross_entropy_forward, log_softmax
from minis2s.tracing import trace


@dataclass
class MemberExplanation:
    """One model's internals while it pronounces the word (every array in reading order)."""

    name: str  # its architecture: "seq2seq" or "attention"
    reverse_source: bool  # it reads the letters right to left
    probs: np.ndarray  # (T, V) its next-phoneme distribution at each step
    gates: dict  # gate name -> (S, H): the top encoder layer's (forward direction) gates per letter
    c: np.ndarray  # (T, H) the top decoder layer's cell state after each step
    attention: np.ndarray | None  # (T, S) attention weights, or None (no attention)
    grad_norm: np.ndarray  # (S,) ‖dL/d embedding‖ of each letter
    loss: float  # the mean cross-entropy of the pronunciation


@dataclass
class Explanation:
    word: str
    letters: list  # S letters
    outputs: list  # T: the phonemes chosen, then "<eos>"
    vocab: list  # V phoneme names, the columns of probs
    probs: np.ndarray  # (T, V) the distribution that chose (an ensemble's: its members' mean)
    members: list  # MemberExplanation, one per model (one for a single model)

    def top(self, k: int = 5) -> list:
        """For each step, the k most likely phonemes as (name, probability), best first."""
        order = np.argsort(-self.probs, axis=1)[:, :k]
        return [[(self.vocab[j], float(p[j])) for j in row] for row, p in zip(order, self.probs)]


def explain_member(g2p: G2P, word: str, phonemes: list) -> MemberExplanation:
    """Trace one model (not an ensemble) along ``phonemes``; see the module docstring."""
    model = g2p.model
    src = np.array(encode_words([word], g2p.src_vocab, g2p.reverse_source)[0])[:, None]  # (S, 1)
    trg = np.array([Vocab.sos_id, *g2p.trg_vocab.encode(phonemes), Vocab.eos_id])[:, None]  # (T+1, 1)
    with trace(model) as t:
        logits = model(src, trg, 1.0, generator=np.random.default_rng(0))  # (T+1, 1, V), row 0 unused
        loss, cache = cross_entropy_forward(logits[1:, 0], trg[1:, 0])
        dlogits = np.zeros_like(logits)
        dlogits[1:, 0] = cross_entropy_backward(1.0, cache)
        model.backward(dlogits)
    model.zero_grad()  # the parameter gradients are not what we came for
    order = slice(None, None, -1) if g2p.reverse_source else slice(None)  # encoder steps -> reading order
    layers = t.layers
    top = model.encoder.rnn.num_layers - 1
    gates = {g: a[order, 0] for g, a in layers[f"encoder.rnn.l{top}"].gates.items()}
    demb = sum(lt.dx for key, lt in layers.items() if key in ("encoder.rnn.l0", "encoder.rnn.l0_reverse"))
    attention = t.attention.get("decoder.attention")
    return MemberExplanation(
        name=g2p.cfg.arch, reverse_source=g2p.reverse_source,
        probs=np.exp(log_softmax(logits[1:, 0].astype(np.float64), axis=1)),
        gates=gates, c=layers[f"decoder.rnn.l{top}"].c[:, 0],
        attention=None if attention is None else attention[:, order, 0],
        grad_norm=np.linalg.norm(demb[order, 0].astype(np.float64), axis=1), loss=float(loss))


def explain(g2p: G2P, word: str) -> Explanation:
    """``word`` through ``g2p`` (a model or an ensemble): its greedy pronunciation, each step's
    distribution and every member's internals. A bad word raises ValueError/TypeError."""
    if not isinstance(word, str):
        raise TypeError(f"word must be a str, got {type(word).__name__}")
    encode_words([word], g2p.src_vocab, False)  # the word's own error, before any work
    phonemes = g2p([word])[0]
    members = [explain_member(m, word, phonemes) for m in (g2p.members or [g2p])]
    probs = np.mean([m.probs for m in members], axis=0)  # (T, V): an ensemble decides by the mean
    return Explanation(word, list(word.lower()), list(phonemes) + ["<eos>"], list(g2p.trg_vocab.itos),
                       probs, members)


def format_explanation(ex: Explanation, k: int = 5) -> str:
    """The text ``g2p explain`` prints: a line per step, then each model's gradient per letter."""
    names = " + ".join(m.name for m in ex.members)
    what = f"ensemble of {names}, greedy; its p is the mean of its members'" if len(ex.members) > 1 else f"{names}, greedy"
    lines = [f"{ex.word} -> {' '.join(ex.outputs[:-1])}   ({what})"]
    header = f"{'step':>4}  {'chosen':<6} {'p':>6}   top {k}"
    if len(ex.members) > 1:
        header += "   |  p of the chosen by " + ", ".join(m.name for m in ex.members)
    lines.append(header)
    for t, (out, alts) in enumerate(zip(ex.outputs, ex.top(k))):
        j = ex.vocab.index(out)
        row = f"{t + 1:>4}  {out:<6} {ex.probs[t, j]:6.3f}   " + "  ".join(f"{n} {p:.3f}" for n, p in alts)
        if len(ex.members) > 1:
            row += "   |  " + ", ".join(f"{m.probs[t, j]:.3f}" for m in ex.members)
        lines.append(row)
    for m in ex.members:
        reads = "reads right to left" if m.reverse_source else "reads left to right"
        lines.append(f"{m.name} ({reads}; loss {m.loss:.4f}): ‖dL/d embedding‖ per letter: "
                     + "  ".join(f"{c} {g:.3g}" for c, g in zip(ex.letters, m.grad_norm)))
    return "\n".join(lines)


def _most_varying(a, n):
    """a: (steps, units) -> the n units (columns) that vary most over the steps, (n, steps)."""
    keep = np.sort(np.argsort(-a.std(axis=0))[:n])
    return a[:, keep].T


def plot_explanation(ex: Explanation, path, units: int = 8) -> None:
    """One PNG (matplotlib, Agg; written atomically): a row per model with its encoder gates over
    the letters (the ``units`` most varying units of each gate), its decoder cell state over the
    steps (3 x units), its attention (when it has one) and ‖dL/d embedding‖ per letter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minis2s.atomic import atomic_save_png

    S, T, M = len(ex.letters), len(ex.outputs), len(ex.members)
    fig, axes = plt.subplots(M, 4, figsize=(4.5 + 0.5 * S + 0.45 * T + 0.4 * S, 1.2 + 3.6 * M),
                             gridspec_kw={"width_ratios": [S, T, S, S]}, squeeze=False)
    for row, m in zip(axes, ex.members):
        reads = "read right to left" if m.reverse_source else "read left to right"
        ax = row[0]  # the encoder's gates: units x letters, one block per gate
        blocks = [_most_varying(a, units) for a in m.gates.values()]
        im = ax.imshow(np.concatenate(blocks), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        for b in range(1, len(blocks)):
            ax.axhline(b * units - 0.5, color="black", lw=1)
        ax.set_yticks([b * units + (units - 1) / 2 for b in range(len(blocks))], list(m.gates))
        ax.set_xticks(range(S), ex.letters)
        ax.set_title(f"{m.name}: encoder gates (top layer, {units} units each)\nletters {reads}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.06)

        ax = row[1]  # the decoder's cell state: units x steps
        c = _most_varying(m.c, 3 * units)
        lim = max(float(np.abs(c).max()), 1e-6)
        im = ax.imshow(c, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(T), ex.outputs, rotation=90)
        ax.set_yticks([])
        ax.set_title(f"decoder cell state c (top layer,\n{3 * units} most varying units) per output", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.06)

        ax = row[2]  # the alignment
        if m.attention is None:
            ax.text(0.5, 0.5, "no attention:\nthe encoder's last state\nis the only context",
                    ha="center", va="center", fontsize=9, transform=ax.transAxes)
            ax.set_axis_off()
        else:
            im = ax.imshow(m.attention, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            ax.set_xticks(range(S), ex.letters)
            ax.set_yticks(range(T), ex.outputs)
            ax.set_title("attention (outputs x letters)", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.06)

        ax = row[3]  # how far back the gradient reaches
        ax.bar(range(S), m.grad_norm, color="tab:blue")
        ax.set_xticks(range(S), ex.letters)
        ax.set_yscale("log")
        ax.set_title(f"‖dL/d embedding‖ per letter (log)\nloss {m.loss:.3f}; letters {reads}", fontsize=9)
    fig.suptitle(f"{ex.word} -> {' '.join(ex.outputs[:-1])}", fontsize=11)
    fig.tight_layout()
    atomic_save_png(fig, path, dpi=100)
    plt.close(fig)
