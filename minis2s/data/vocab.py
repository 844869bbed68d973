"""A token <-> id table with the four special tokens every seq2seq task needs."""
from __future__ import annotations

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)  # ids 0, 1, 2, 3


class Vocab:
    def __init__(self, tokens):
        tokens = list(tokens)
        extra = [t for t in tokens if t not in SPECIALS]
        if len(set(extra)) != len(extra):
            raise ValueError("tokens contains duplicates")
        self.itos = list(SPECIALS) + extra
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, sequences):
        """A vocabulary of every token in ``sequences``, sorted for reproducibility."""
        return cls(sorted({tok for seq in sequences for tok in seq}))

    def __len__(self):
        return len(self.itos)

    def __contains__(self, token):
        return token in self.stoi

    def encode(self, tokens, *, strict: bool = True, name: str = "tokens"):
        """Tokens -> ids. With ``strict`` an unknown token is a KeyError naming it; otherwise <unk>."""
        if strict:
            unknown = sorted({t for t in tokens if t not in self.stoi or t in SPECIALS})
            if unknown:
                raise KeyError(f"{name} contains symbols outside the vocabulary: {unknown}")
            return [self.stoi[t] for t in tokens]
        return [self.stoi.get(t, self.unk_id) for t in tokens]

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
