"""A token <-> id table with the four special tokens every seq2seq task needs."""
from __future__ import annotations

from collections import Counter

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)  # ids 0, 1, 2, 3


class Vocab:
    """Tokens (strings) <-> ids (ints).

    Ids 0..3 are the specials: 0 ``<pad>`` fills a batch past a sequence's end (the loss ignores
    it), 1 ``<sos>`` starts every decoder input, 2 ``<eos>`` ends every target, 3 ``<unk>``
    stands for a token outside the vocabulary. Ids 4.. are the tokens, in the order given.

    Encoding is ``strict`` by default: a token outside the vocabulary is a KeyError naming it
    (a model's inputs should be known). ``strict=False`` maps it to ``<unk>`` instead, e.g. for a
    dev or test set with tokens training never saw; ``unknown(tokens)`` lists them.

    The specials' strings are not tokens. A literal ``"<unk>"`` (or ``"<eos>"``...) in user data
    is never a token of the vocabulary: ``Vocab(tokens)`` and ``build`` leave it out, strict
    encoding refuses it, and non-strict encoding maps it to ``<unk>`` like any other unknown
    token (it is counted by ``unknown``), so text can never inject a padding or end-of-sequence
    id into a sequence.
    """

    def __init__(self, tokens):
        tokens = list(tokens)
        for i, t in enumerate(tokens):
            if not isinstance(t, str):
                raise TypeError(f"tokens[{i}] must be a str, got {type(t).__name__}")
        extra = [t for t in tokens if t not in SPECIALS]
        if len(set(extra)) != len(extra):
            raise ValueError("tokens contains duplicates")
        self.itos = list(SPECIALS) + extra
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, sequences, min_freq: int = 1):
        """A vocabulary of the tokens seen at least ``min_freq`` times in ``sequences`` (a list
        of token lists), sorted for reproducibility; the specials' strings are left out."""
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an integer >= 1, got {min_freq!r}")
        counts = Counter(tok for seq in sequences for tok in seq)
        return cls(sorted(t for t, c in counts.items() if c >= min_freq and t not in SPECIALS))

    def __len__(self):
        return len(self.itos)

    def __contains__(self, token):
        return token in self.stoi

    def _known(self, token) -> bool:
        return token in self.stoi and token not in SPECIALS

    def unknown(self, tokens) -> list[str]:
        """The tokens of ``tokens`` that encoding would turn into <unk>, in order (with repeats)."""
        return [t for t in tokens if not self._known(t)]

    def encode(self, tokens, *, strict: bool = True, name: str = "tokens"):
        """Tokens -> ids. With ``strict`` an unknown token is a KeyError naming it; otherwise <unk>."""
        if strict:
            unknown = sorted(set(self.unknown(tokens)))
            if unknown:
                raise KeyError(f"{name} contains symbols outside the vocabulary: {unknown}")
            return [self.stoi[t] for t in tokens]
        return [self.stoi[t] if self._known(t) else self.unk_id for t in tokens]

    def decode(self, ids, *, stop_at_eos: bool = True):
        """Ids -> tokens, dropping <sos>/<pad> and stopping at <eos>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id and stop_at_eos:
                break
            if i in (self.pad_id, self.sos_id):
                continue
            out.append(self.itos[i])
        return out

    def to_json(self):
        return self.itos[len(SPECIALS):]

    @classmethod
    def from_json(cls, tokens):
        return cls(tokens)

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self):
        return f"Vocab({len(self)} tokens)"
