"""Tokenizers (minis2s/data/tokenizers.py): every kind round-trips the text it promises to
(arbitrary Unicode for char, bpe and unigram), saves and reloads to the same tokenization,
trains deterministically, and refuses bad arguments with a message that says what to change.
The last section is the step after tokenizing: the Vocab (minis2s/data/vocab.py) of their tokens."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minis2s.data import TOKENIZER_KINDS, Tokenizer, Vocab, make_tokenizer, tokenizer_from_json

# Small, fixed and multilingual: Latin with accents, Cyrillic, Japanese, digits and punctuation.
CORPUS = [
    "the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "cats and dogs are friends",
    "le chat est sur le tapis", "le chien est dans le jardin", "où est le café ?",
    "garçon, l'addition s'il vous plaît",
    "der hund schläft", "die katze schläft auch", "straße und brücke", "größer als das haus",
    "собака спит", "кошка тоже спит", "привет, как дела?",
    "猫が好きです", "犬も好きです", "東京は大きい",
    "1924-02-10 and 2001-09-11", "call 555-0100 at 10:30",
]
VOCAB_SIZE = 350  # between the floor (331: 256 bytes + 71 characters + 4) and unigram's most (356)
SUBWORDS = ("bpe", "unigram")
BYTES_OF_SPACE_MARK = ["<0xE2>", "<0x96>", "<0x81>"]  # UTF-8 of "▁" (U+2581)


@pytest.fixture(scope="module")
def fitted():
    """{(kind, lowercase): a fitted subword tokenizer}, trained once for the module."""
    out = {}
    for kind in SUBWORDS:
        for lowercase in (False, True):
            tok = make_tokenizer(kind, vocab_size=VOCAB_SIZE, lowercase=lowercase)
            tok.fit([s.upper() for s in CORPUS[:3]] + CORPUS)
            out[kind, lowercase] = tok
    return out


def expected(text, lowercase):
    return text.lower() if lowercase else text


# Arbitrary text, plus pieces that are special somewhere: sentencepiece's space mark, the
# names of Vocab's specials and of byte pieces, and words the models have merged.
SPECIAL_SOMEWHERE = ["▁", "▁▁", " ", "  ", "\t", "\n", "<pad>", "<unk>", "<s>", "</s>", "<0x41>",
                     "the cat", "schläft", "спит", "好きです", "2001"]
tricky = st.lists(st.text() | st.sampled_from(SPECIAL_SOMEWHERE), max_size=6).map("".join)


# ---- char and space ------------------------------------------------------------------------------
def test_char_tokens_are_code_points():
    tok = make_tokenizer("char")
    assert tok.tokenize("e\u0301 😀\t<unk>") == ["e", "\u0301", " ", "😀", "\t", "<", "u", "n", "k", ">"]
    assert tok.vocabulary() is None and tok.files() == {} and tok.kind == "char"
    assert make_tokenizer("char", lowercase=True).tokenize("ÀB") == ["à", "b"]


@settings(max_examples=300, deadline=None)
@given(text=st.text(), lowercase=st.booleans())
def test_char_round_trip_any_text(text, lowercase):
    tok = make_tokenizer("char", lowercase=lowercase)
    assert tok.detokenize(tok.tokenize(text)) == expected(text, lowercase)


def test_space_splits_on_any_whitespace():
    tok = make_tokenizer("space")
    assert tok.tokenize("  a  b\tc\nd\u3000e ") == ["a", "b", "c", "d", "e"]
    assert tok.detokenize(["a", "b"]) == "a b" and tok.vocabulary() is None
    assert make_tokenizer("space", lowercase=True).tokenize("Hello WORLD") == ["hello", "world"]


@settings(max_examples=300, deadline=None)
@given(text=st.text(), lowercase=st.booleans())
def test_space_round_trip_is_whitespace_normalisation(text, lowercase):
    tok = make_tokenizer("space", lowercase=lowercase)
    normalised = " ".join(expected(text, lowercase).split())
    assert tok.detokenize(tok.tokenize(text)) == normalised
    assert tok.detokenize(tok.tokenize(normalised)) == normalised  # exact on normalised text


# ---- subwords ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SUBWORDS)
@settings(max_examples=300, deadline=None)
@given(text=st.text() | tricky, lowercase=st.booleans())
def test_subword_round_trip_any_text(fitted, kind, text, lowercase):
    tok = fitted[kind, lowercase]
    pieces = tok.tokenize(text)
    assert tok.detokenize(pieces) == expected(text, lowercase), pieces
    assert set(pieces) <= set(tok.vocabulary())  # byte fallback: never <unk>, never outside


@pytest.mark.parametrize("kind", SUBWORDS)
def test_subword_model_learned_pieces_and_spaces(fitted, kind):
    tok = fitted[kind, False]
    pieces = tok.tokenize("the cat sat on the mat")
    assert len(pieces) < len("the cat sat on the mat")  # merges were learned
    assert any(p.startswith("▁") for p in pieces)  # sentencepiece marks spaces with U+2581
    assert tok.tokenize("2001") == ["2", "0", "0", "1"]  # split_digits


@pytest.mark.parametrize("kind", SUBWORDS)
def test_subword_literal_space_mark_and_vocab_specials(fitted, kind):
    tok = fitted[kind, False]
    pieces = tok.tokenize("a▁b")
    assert pieces[1:4] == BYTES_OF_SPACE_MARK and tok.detokenize(pieces) == "a▁b"
    assert tok.detokenize(tok.tokenize("a ▁ b")) == "a ▁ b"
    for special in ("<pad>", "<sos>", "<eos>", "<unk>"):
        assert special not in tok.tokenize(special)  # spelled out in ordinary pieces
        assert tok.detokenize(tok.tokenize(special)) == special


@pytest.mark.parametrize("kind", SUBWORDS)
def test_subword_vocabulary(fitted, kind):
    vocab = fitted[kind, False].vocabulary()
    assert len(vocab) == VOCAB_SIZE - 4 == len(set(vocab))  # less <unk> and <pad> <sos> <eos>
    assert {f"<0x{b:02X}>" for b in range(256)} <= set(vocab)
    assert not {"<unk>", "<pad>", "<sos>", "<eos>", "<s>", "</s>"} & set(vocab)
    assert "▁" in vocab and "猫" in vocab  # every training character is a piece


def test_lowercase_applies_to_every_kind(fitted):
    for kind in ("char", "space"):
        tok = make_tokenizer(kind, lowercase=True)
        assert tok.tokenize("The CAT") == make_tokenizer(kind).tokenize("the cat")
    for kind in SUBWORDS:
        lower = fitted[kind, True]
        assert lower.tokenize("THE CAT Straße") == lower.tokenize("the cat straße")
        assert fitted[kind, False].tokenize("THE CAT") != fitted[kind, False].tokenize("the cat")


# ---- saving and loading --------------------------------------------------------------------------
SAMPLES = CORPUS + ["unseen ÆØÅ text 🙂", "a▁b", "  spaced  out  ", "THE CAT"]


@pytest.mark.parametrize("key", [("char", False), ("space", True), ("bpe", False), ("bpe", True),
                                 ("unigram", False), ("unigram", True)])
def test_to_json_and_files_rebuild_the_same_tokenizer(fitted, key):
    kind, lowercase = key
    tok = fitted[key] if kind in SUBWORDS else make_tokenizer(kind, lowercase=lowercase)
    d = json.loads(json.dumps(tok.to_json()))  # it is what a model.json stores
    assert d["kind"] == kind and d["lowercase"] == lowercase
    files = tok.files()
    assert list(files) == ([] if kind in ("char", "space") else ["tokenizer.model"])
    again = tokenizer_from_json(d, files)
    assert isinstance(again, Tokenizer) and again.to_json() == tok.to_json() and again.files() == files
    for s in SAMPLES:
        assert again.tokenize(s) == tok.tokenize(s), s
    assert again.vocabulary() == tok.vocabulary()


def test_prefix_names_the_model_file():
    tok = make_tokenizer("bpe", vocab_size=VOCAB_SIZE, prefix="src-tokens")
    tok.fit(CORPUS)
    assert list(tok.files()) == ["src-tokens.model"] and tok.to_json()["prefix"] == "src-tokens"
    with pytest.raises(ValueError, match=r"tokenizer file 'src-tokens.model' is missing"):
        tokenizer_from_json(tok.to_json(), {"tokenizer.model": tok.files()["src-tokens.model"]})


@pytest.mark.parametrize("kind", SUBWORDS)
def test_training_is_deterministic_and_quiet(capfd, kind):
    models = []
    for _ in range(2):
        tok = make_tokenizer(kind, vocab_size=VOCAB_SIZE)
        tok.fit(CORPUS)
        models.append(tok.files()["tokenizer.model"])
    assert models[0] == models[1]
    out, err = capfd.readouterr()  # sentencepiece logs to the C-level stderr unless silenced
    assert out == "" and err == ""


# ---- vocabulary size -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SUBWORDS)
def test_vocab_size_too_large_says_the_limit_and_the_limit_works(kind):
    with pytest.raises(ValueError, match=r"^vocab_size 100000 is too large for this training data "
                                         r"\(at most ~(\d+) pieces\): lower --vocab-size$") as e:
        make_tokenizer(kind, vocab_size=100000).fit(CORPUS)
    most = int(str(e.value).split("~")[1].split()[0])
    tok = make_tokenizer(kind, vocab_size=most)
    tok.fit(CORPUS)
    assert len(tok.vocabulary()) == most - 4


@pytest.mark.parametrize("kind", SUBWORDS)
def test_vocab_size_too_small_says_the_floor(kind):
    with pytest.raises(ValueError, match=r"^vocab_size 300 is too small for this training data "
                                         r"\(at least 331 pieces: .*\): raise --vocab-size$"):
        make_tokenizer(kind, vocab_size=300).fit(CORPUS)
    make_tokenizer(kind, vocab_size=331).fit(CORPUS)  # the floor itself is enough


# ---- bad arguments -------------------------------------------------------------------------------
def test_unknown_kind_and_bad_settings():
    with pytest.raises(ValueError) as e:
        make_tokenizer("x")
    assert str(e.value) == f"tokens must be one of {TOKENIZER_KINDS}, got 'x'"
    for kind in TOKENIZER_KINDS:
        for bad in (0, -5, 1.5, True, "1000", None):
            with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
                make_tokenizer(kind, vocab_size=bad)
    for bad in ("", "../up", "a/b", ".hidden", 3):
        with pytest.raises(ValueError, match="prefix must be a plain file name"):
            make_tokenizer("unigram", prefix=bad)
    with pytest.raises(TypeError, match="lowercase must be True or False"):
        make_tokenizer("char", lowercase="yes")


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_non_str_input_is_a_type_error(kind):
    tok = make_tokenizer(kind, vocab_size=VOCAB_SIZE)
    with pytest.raises(TypeError, match="texts must be a list of str, got str"):
        tok.fit("a whole string")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        tok.fit(["ok", 3])
    if kind in SUBWORDS:
        tok.fit(CORPUS)
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        tok.tokenize(b"abc")
    with pytest.raises(TypeError, match=r"tokens\[0\] must be a str, got int"):
        tok.detokenize([1])


@pytest.mark.parametrize("kind", SUBWORDS)
def test_subword_before_fit_is_a_value_error(kind):
    tok = make_tokenizer(kind)
    for use in (lambda: tok.tokenize("a"), lambda: tok.detokenize(["a"]), tok.vocabulary, tok.files):
        with pytest.raises(ValueError, match=f"the {kind} tokenizer has not been fitted"):
            use()
    with pytest.raises(ValueError, match="no characters to learn"):
        tok.fit(["▁", ""])


def test_tokenizer_from_json_refuses_bad_descriptions():
    with pytest.raises(ValueError, match="tokens must be one of"):
        tokenizer_from_json({"kind": "words"}, {})
    with pytest.raises(ValueError, match="with a 'kind'"):
        tokenizer_from_json({"lowercase": False}, {})
    with pytest.raises(ValueError, match=r"unknown settings \['vocab_size'\] for kind 'char'"):
        tokenizer_from_json({"kind": "char", "lowercase": False, "vocab_size": 5}, {})
    with pytest.raises(ValueError, match="'tokenizer.model' is missing"):
        tokenizer_from_json({"kind": "bpe", "lowercase": False, "vocab_size": 500, "prefix": "tokenizer"}, {})
    with pytest.raises(ValueError, match="tokenizer.model is not a sentencepiece model"):
        tokenizer_from_json({"kind": "bpe", "prefix": "tokenizer"}, {"tokenizer.model": b"not a model"})


# ---- the Vocab of the tokens ---------------------------------------------------------------------
def test_vocab_build_min_freq_is_sorted_and_checked():
    seqs = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    assert Vocab.build(seqs).to_json() == ["a", "b", "c", "d"]
    assert Vocab.build(seqs, min_freq=2).to_json() == ["a", "b"]
    assert Vocab.build(seqs, min_freq=4).to_json() == []
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="min_freq must be an integer >= 1"):
            Vocab.build(seqs, min_freq=bad)
    with pytest.raises(TypeError, match=r"tokens\[1\] must be a str, got int"):
        Vocab(["a", 1])


def test_vocab_literal_specials_in_data_become_unk_never_their_ids():
    tok = make_tokenizer("space")
    seqs = [tok.tokenize(s) for s in ["pad with <pad> and end with <eos>", "an <unk> word"]]
    v = Vocab.build(seqs)
    assert v.itos[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    assert v.to_json() == ["an", "and", "end", "pad", "with", "word"]  # the literal specials left out
    line = tok.tokenize("<eos> word <pad> zebra zebra")
    assert v.unknown(line) == ["<eos>", "<pad>", "zebra", "zebra"]  # in order, with repeats
    assert v.encode(line, strict=False) == [v.unk_id, v.stoi["word"], v.unk_id, v.unk_id, v.unk_id]
    with pytest.raises(KeyError, match=r"\['<eos>', '<pad>', 'zebra'\]"):
        v.encode(line)
    assert v.unknown(tok.tokenize("word with")) == []


@pytest.mark.parametrize("kind", SUBWORDS)
@settings(max_examples=100, deadline=None)
@given(text=tricky)
def test_vocab_of_subword_pieces_encodes_any_text_strictly(fitted, kind, text):
    tok = fitted[kind, False]
    v = Vocab(tok.vocabulary())
    assert len(v) == 4 + len(tok.vocabulary())  # no piece shares a special's name
    ids = v.encode(tok.tokenize(text))  # strict: no piece is unknown
    assert tok.detokenize(v.decode(ids)) == text
