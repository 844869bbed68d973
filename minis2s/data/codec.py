"""One side of a task (source or target): a tokenizer and a vocabulary, text <-> ids.

    codec = TextCodec(make_tokenizer("char"), vocab)
    ids, unknown = codec.encode("feb 10, 1924")     # ids without specials; the tokens that became <unk>
    codec.decode(ids)                               # back to the text (detokenised)

``TextCodec.fit`` learns both from training text: the tokenizer (subwords: a sentencepiece
model), then the vocabulary (the tokenizer's own inventory for subwords; otherwise every token
seen at least ``min_freq`` times). ``to_json``/``files`` describe it for a model folder and
``from_json`` rebuilds it.
"""
from __future__ import annotations

from minis2s.data.tokenizers import Tokenizer, make_tokenizer, tokenizer_from_json
from minis2s.data.vocab import Vocab


class TextCodec:
    def __init__(self, tokenizer: Tokenizer, vocab: Vocab):
        self.tokenizer, self.vocab = tokenizer, vocab

    @classmethod
    def fit(cls, texts, kind: str, *, lowercase: bool = False, vocab_size: int = 1000, min_freq: int = 1,
            prefix: str = "tokenizer", tokens=None) -> TextCodec:
        """A codec learnt from ``texts`` (the training side). ``tokens``: a fixed inventory
        instead of the one learnt (e.g. G2P's 26 letters, so any subset trains the same model)."""
        tokenizer = make_tokenizer(kind, lowercase=lowercase, vocab_size=vocab_size, prefix=prefix)
        tokenizer.fit(list(texts))
        if tokens is not None:
            vocab = Vocab(tokens)
        elif tokenizer.vocabulary() is not None:
            vocab = Vocab(tokenizer.vocabulary())
        else:
            vocab = Vocab.build((tokenizer.tokenize(t) for t in texts), min_freq=min_freq)
        return cls(tokenizer, vocab)

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        """text -> (ids, the tokens that were not in the vocabulary and became <unk>)."""
        tokens = self.tokenizer.tokenize(text)
        return self.vocab.encode(tokens, strict=False), self.vocab.unknown(tokens)

    def decode(self, ids) -> str:
        """ids -> text (stops at <eos>; <pad>/<sos> dropped; <unk> kept as the string "<unk>")."""
        return self.tokenizer.detokenize(self.vocab.decode(ids))

    def to_json(self) -> dict:
        return {"tokenizer": self.tokenizer.to_json(), "vocab": self.vocab.to_json()}

    def files(self) -> dict[str, bytes]:
        return self.tokenizer.files()

    @classmethod
    def from_json(cls, d: dict, files: dict[str, bytes]) -> TextCodec:
        return cls(tokenizer_from_json(d["tokenizer"], files), Vocab(d["vocab"]))

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self):
        return f"TextCodec({self.tokenizer!r}, {self.vocab!r})"
