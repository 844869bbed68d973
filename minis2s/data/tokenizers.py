"""Tokenizers: a string -> a list of token strings, and back.

Four kinds (``TOKENIZER_KINDS``), one interface (``Tokenizer``):

* ``"char"``: every Unicode code point is a token (spaces, tabs, emoji, combining marks; no
  normalisation). ``detokenize`` is ``"".join``. Every string round-trips.
* ``"space"``: ``text.split()``, ``detokenize`` is ``" ".join``. Runs of whitespace (tabs and
  newlines included) become one space and leading/trailing whitespace is lost, so the round trip
  gives ``" ".join(text.split())``: exact for text already written with single spaces.
* ``"bpe"`` and ``"unigram"``: subword pieces learned by the ``sentencepiece`` package from the
  training side (``fit``). Every string round-trips exactly, see ``SubwordTokenizer``.

With ``lowercase`` the text is lower-cased (``str.lower``) before anything else, for every kind,
so the round trip gives ``text.lower()``.

A tokenizer is saved as ``to_json()`` (its kind and settings, for a model's JSON description)
plus ``files()`` (for subwords, the sentencepiece model, stored beside it in the model folder);
``tokenizer_from_json`` rebuilds it from the two.
"""
from __future__ import annotations

import io
import re

TOKENIZER_KINDS = ("char", "space", "bpe", "unigram")


def _check_settings(vocab_size, prefix) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", prefix):
        raise ValueError("prefix must be a plain file name (letters, digits, '_', '-', '.'), "
                         f"got {prefix!r}")


def _check_text(text, name: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")


class Tokenizer:
    """The interface. ``tokenize(text)`` -> tokens; ``detokenize(tokens)`` -> text.

    ``vocabulary()`` is the fixed token inventory of a subword model, or None when the
    vocabulary is built from the data (char, space).
    """

    kind: str = ""

    def __init__(self, *, lowercase: bool = False):
        if not isinstance(lowercase, bool):
            raise TypeError(f"lowercase must be True or False, got {lowercase!r}")
        self.lowercase = lowercase

    def _prepare(self, text, name: str = "text") -> str:
        _check_text(text, name)
        return text.lower() if self.lowercase else text

    def _prepare_all(self, texts) -> list[str]:
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        return [self._prepare(t, f"texts[{i}]") for i, t in enumerate(texts)]

    def fit(self, texts: list[str]) -> None:
        """Learn from the training side. Only subword tokenizers learn; the others check types."""
        self._prepare_all(texts)

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def detokenize(self, tokens: list[str]) -> str:
        raise NotImplementedError

    def vocabulary(self) -> list[str] | None:
        return None

    def to_json(self) -> dict:
        """The settings ``make_tokenizer`` takes, with the kind: ``make_tokenizer(**d)``."""
        return {"kind": self.kind, "lowercase": self.lowercase}

    def files(self) -> dict[str, bytes]:
        return {}

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in self.to_json().items() if k != "kind")
        return f"{type(self).__name__}({settings})"


def _check_tokens(tokens) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, (list, tuple)):
        raise TypeError(f"tokens must be a list of str, got {type(tokens).__name__}")
    for i, t in enumerate(tokens):
        _check_text(t, f"tokens[{i}]")
    return list(tokens)


class CharTokenizer(Tokenizer):
    """One token per Unicode code point."""

    kind = "char"

    def tokenize(self, text: str) -> list[str]:
        return list(self._prepare(text))

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(_check_tokens(tokens))


class SpaceTokenizer(Tokenizer):
    """Whitespace-separated words; runs of whitespace become one space on the way back."""

    kind = "space"

    def tokenize(self, text: str) -> list[str]:
        return self._prepare(text).split()

    def detokenize(self, tokens: list[str]) -> str:
        return " ".join(_check_tokens(tokens))


# sentencepiece writes a space as "▁" (U+2581) inside pieces and turns every "▁" back into a
# space when decoding, so a literal "▁" in the text would come back as a space. We encode a
# literal "▁" as its three UTF-8 byte pieces instead (byte pieces decode to the character itself).
_SPACE_MARK = "\u2581"
_SPACE_MARK_BYTES = [f"<0x{b:02X}>" for b in _SPACE_MARK.encode("utf-8")]  # <0xE2> <0x96> <0x81>

# Names the pieces must not take: minis2s.data.vocab's specials. sentencepiece's <unk> is already
# one; the other three are reserved as sentencepiece control symbols, which encoding never
# produces from text, so a "<pad>" in the data is tokenized into ordinary pieces.
_RESERVED = ["<pad>", "<sos>", "<eos>"]

_TRAINER_OPTIONS = {
    "normalization_rule_name": "identity",  # no NFKC: the text comes back as it went in
    "add_dummy_prefix": False,  # no invented leading space
    "remove_extra_whitespaces": False,  # spaces are data
    "byte_fallback": True,  # a character unseen in training becomes byte pieces <0xE4>..., not <unk>
    "character_coverage": 1.0,  # every character seen in training gets a piece of its own
    "split_digits": True,  # numbers digit by digit: a year unseen in training is still known digits
    "bos_id": -1, "eos_id": -1,  # minis2s.data.vocab adds its own <sos>/<eos>
    "unk_id": 0,
    "control_symbols": _RESERVED,
    # The learned model depends on how the work is split across threads, so the count is pinned
    # (to sentencepiece's default) rather than taken from the machine: same data, same model.
    "num_threads": 16,
    "minloglevel": 2,  # sentencepiece logs every training step to stderr otherwise
}


def _import_sentencepiece():
    try:
        import sentencepiece
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("bpe/unigram tokens need the 'sentencepiece' package: "
                           "pip install sentencepiece") from e
    return sentencepiece


class SubwordTokenizer(Tokenizer):
    """BPE or unigram subwords learned by sentencepiece, trained in memory on ``fit``'s texts.

    Every string round-trips exactly: identity normalisation, no dummy prefix, spaces kept,
    byte fallback for characters training never saw, and a literal "▁" written as byte pieces
    (sentencepiece's own space mark would otherwise come back as a space).

    ``vocab_size`` counts every piece of the model: sentencepiece's ``<unk>`` (which byte fallback
    means ``tokenize`` never produces), three reserved control symbols (``<pad> <sos> <eos>``, so
    no piece can be named like a Vocab special), 256 byte pieces, one piece per character seen in
    training, and the learned merges. ``vocabulary()`` lists every piece but those first four,
    so it has ``vocab_size - 4``. A ``vocab_size`` below that floor or above what the data can
    supply is a ValueError that says the limit (sentencepiece's hard limit is kept: you get the
    size you asked for, or an error). sentencepiece skips training sentences over 4,192 bytes;
    ``tokenize`` takes text of any length.
    """

    def __init__(self, kind: str, *, lowercase: bool = False, vocab_size: int = 1000,
                 prefix: str = "tokenizer"):
        super().__init__(lowercase=lowercase)
        _check_settings(vocab_size, prefix)
        self.kind, self.vocab_size, self.prefix = kind, vocab_size, prefix
        self._model: bytes | None = None
        self._sp = None

    @property
    def model_file(self) -> str:
        return f"{self.prefix}.model"

    def _processor(self):
        if self._sp is None:
            raise ValueError(f"the {self.kind} tokenizer has not been fitted: call fit(texts) first")
        return self._sp

    def _load(self, model: bytes) -> None:
        spm = _import_sentencepiece()
        try:
            sp = spm.SentencePieceProcessor(model_proto=model)
        except RuntimeError as e:  # what sentencepiece raises for bytes that do not parse
            raise ValueError(f"{self.model_file} is not a sentencepiece model ({e})") from None
        self._model, self._sp = model, sp

    def fit(self, texts: list[str]) -> None:
        """Train on ``texts`` (the training side), replacing any earlier model."""
        texts = self._prepare_all(texts)
        # Pieces never span a literal "▁" at tokenize time, so they do not learn to in training.
        sentences = [part for t in texts for part in t.split(_SPACE_MARK) if part]
        if not sentences:
            raise ValueError("texts has no characters to learn subwords from")
        spm = _import_sentencepiece()
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=buf,
                                           model_type=self.kind, vocab_size=self.vocab_size,
                                           **_TRAINER_OPTIONS)
        except RuntimeError as e:
            raise self._training_error(str(e)) from None
        self._load(buf.getvalue())

    def _training_error(self, message: str) -> ValueError:
        """sentencepiece's vocabulary-size failures, restated for a user of --vocab-size."""
        n = self.vocab_size
        high = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", message)
        if high:
            return ValueError(f"vocab_size {n} is too large for this training data (at most "
                              f"~{high.group(1)} pieces): lower --vocab-size")
        low = re.search(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)", message)
        if low:
            return ValueError(f"vocab_size {n} is too small for this training data (at least "
                              f"{low.group(1)} pieces: 256 bytes, one per character seen, <unk> "
                              f"and 3 reserved): raise --vocab-size")
        return ValueError(f"sentencepiece could not train a {self.kind} model: {message.splitlines()[0]}")

    def tokenize(self, text: str) -> list[str]:
        sp = self._processor()
        pieces: list[str] = []
        for i, part in enumerate(self._prepare(text).split(_SPACE_MARK)):
            if i:
                pieces += _SPACE_MARK_BYTES
            if part:
                pieces += sp.encode(part, out_type=str)
        return pieces

    def detokenize(self, tokens: list[str]) -> str:
        """Pieces -> text. A piece outside the model decodes as its own text, except "<unk>"
        (what Vocab.decode gives for the unknown id), which sentencepiece writes " ⁇ ", and the
        reserved "<pad>", "<sos>", "<eos>", which decode to nothing."""
        return self._processor().decode_pieces(_check_tokens(tokens))

    def vocabulary(self) -> list[str]:
        sp = self._processor()
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                if not (sp.is_unknown(i) or sp.is_control(i))]

    def to_json(self) -> dict:
        return {**super().to_json(), "vocab_size": self.vocab_size, "prefix": self.prefix}

    def files(self) -> dict[str, bytes]:
        self._processor()
        return {self.model_file: self._model}


def make_tokenizer(kind: str, *, lowercase: bool = False, vocab_size: int = 1000,
                   prefix: str = "tokenizer") -> Tokenizer:
    """A new tokenizer of ``kind`` (one of TOKENIZER_KINDS). ``vocab_size`` and ``prefix`` (the
    model file's name, ``<prefix>.model``) matter to bpe/unigram only, which must be ``fit``;
    they are checked for every kind, so a bad setting is an error before it would matter."""
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"tokens must be one of {TOKENIZER_KINDS}, got {kind!r}")
    _check_settings(vocab_size, prefix)
    if kind == "char":
        return CharTokenizer(lowercase=lowercase)
    if kind == "space":
        return SpaceTokenizer(lowercase=lowercase)
    return SubwordTokenizer(kind, lowercase=lowercase, vocab_size=vocab_size, prefix=prefix)


def tokenizer_from_json(d: dict, files: dict[str, bytes]) -> Tokenizer:
    """The inverse of ``to_json()`` and ``files()``: the same tokenizer, fitted if it was."""
    if not isinstance(d, dict) or "kind" not in d:
        raise ValueError(f"a tokenizer description must be a dict with a 'kind', got {d!r:.80}")
    settings = {k: v for k, v in d.items() if k != "kind"}
    allowed = {"lowercase"} if d["kind"] in ("char", "space") else {"lowercase", "vocab_size", "prefix"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"tokenizer description has unknown settings {unknown} for kind {d['kind']!r}")
    tok = make_tokenizer(d["kind"], **settings)
    if isinstance(tok, SubwordTokenizer):
        if tok.model_file not in files:
            raise ValueError(f"tokenizer file {tok.model_file!r} is missing (have {sorted(files)})")
        tok._load(files[tok.model_file])
    return tok
