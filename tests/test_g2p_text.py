"""The G2P text front end (minis2s/g2p_text.py, ``G2P().text``, ``g2p predict --text``).

Sentences written for the test: numbers of every kind (cardinals, ``1,000``, decimals, ordinals,
years, currency, percentages), contractions and possessives (in CMUdict and by rule), hyphenated
words (in CMUdict and part by part), unknown words (the model's, in one batch), punctuation,
case, accents, other scripts and emoji, empty text. The expected phonemes are CMUdict's own.
A tiny stress model is trained in the test (20 steps) for the stress rules.
"""
import os
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import REPO, assert_clean_error, assert_ok, minis2s

from minis2s.data.cmudict import load_cmudict
from minis2s.g2p import G2P
from minis2s.g2p_text import SOURCES, Token, number_words, pronounce, text_lexicon, tokenize

CMU = load_cmudict()


def first(*words):
    """CMUdict's first pronunciations of ``words``, one after the other (stress-free)."""
    return [ph for w in words for ph in CMU[w][0]]


def dotted(entry):
    """CMUdict's first pronunciation of an entry of the text lexicon ("u.s.a.", "j." the letter's
    name, "o'clock")."""
    return list(text_lexicon(False)[entry][0])


@pytest.fixture(scope="module")
def g2p():
    return G2P()  # the shipped default, an unstressed model


@pytest.fixture(scope="module")
def stress_model(tmp_path_factory):
    """A tiny model trained with stress digits (20 steps: its guesses are poor, but stressed)."""
    cwd = tmp_path_factory.mktemp("stress")
    assert_ok(minis2s("g2p", "train", "--stress", "--out", "run", "--max-steps", "20", "--train-limit", "2000",
                      "--hidden", "32", "--layers", "1", "--embedding", "16", "--quiet", cwd=cwd))
    return G2P(str(cwd / "run" / "best"))


def pairs(tokens):
    return [(t.text, t.phonemes, t.source) for t in tokens]


def test_a_sentence_gives_tokens_as_written_in_reading_order(g2p):
    tokens = g2p.text("Hello, world! I don't know...")
    assert all(isinstance(t, Token) and t.source in SOURCES for t in tokens)
    assert pairs(tokens) == [
        ("Hello", ["HH", "AH", "L", "OW"], "lexicon"), (",", [], "punctuation"),
        ("world", ["W", "ER", "L", "D"], "lexicon"), ("!", [], "punctuation"),
        ("I", ["AY"], "lexicon"), ("don't", ["D", "OW", "N", "T"], "lexicon"), ("know", ["N", "OW"], "lexicon"),
        ("...", [], "punctuation")]


def test_case_is_ignored(g2p):
    assert [t.phonemes for t in g2p.text("hello HELLO Hello hElLo")] == [first("hello")] * 4


@pytest.mark.parametrize("text", ["", " ", "  \n\t \r\n "])
def test_empty_and_whitespace_only_text_give_nothing(g2p, text):
    assert g2p.text(text) == []


def test_several_pronunciations_take_the_first_and_carry_the_others(g2p):
    read, live, hello, world = g2p.text("read live hello world")
    assert read.phonemes == ["R", "EH", "D"] and read.alternatives == [["R", "IY", "D"]]
    assert live.phonemes == ["L", "AY", "V"] and live.alternatives == [["L", "IH", "V"]]
    assert hello.alternatives == [["HH", "EH", "L", "OW"]]
    assert world.alternatives == []


@pytest.mark.parametrize("token, words", [
    ("7", "seven"), ("42", "forty-two"), ("1,000", "one thousand"), ("1,998", "one thousand, nine hundred and ninety-eight"),
    ("3.14", "three point one four"), ("0.5", "zero point five"), ("007", "zero zero seven"),
    ("1st", "first"), ("22nd", "twenty-second"), ("3rd", "third"), ("101st", "one hundred and first"),
    ("1998", "nineteen ninety-eight"), ("2005", "two thousand and five"), ("1100", "eleven hundred"),
    ("2099", "twenty ninety-nine"), ("2100", "two thousand, one hundred"), ("1099", "one thousand and ninety-nine"),
    ("1990s", "nineteen nineties"), ("80s", "eighties"),
    ("$15", "fifteen dollars"), ("$1", "one dollar"), ("$1.50", "one dollar fifty cents"), ("$0.99", "ninety-nine cents"),
    ("$1,000", "one thousand dollars"), ("£2.01", "two pounds one penny"), ("€3", "three euros"),
    ("$3.14159", "three point one four one five nine dollars"),
    ("50%", "fifty percent"), ("2.5%", "two point five percent"),
    ("10:30", "ten thirty"), ("9:05", "nine oh five"), ("7:00", "seven o'clock"), ("23:59", "twenty-three fifty-nine"),
    ("-5", "minus five"), ("−7", "minus seven"), ("-3.5%", "minus three point five percent"),
    ("-$20", "minus twenty dollars"), ("-2,000", "minus two thousand"), ("-1998", "minus one thousand, nine hundred and ninety-eight"),
])
def test_numbers_are_read_out(token, words):
    assert tokenize(token) == [(token, "number")]
    assert number_words(token) == words


def test_numbers_in_a_sentence_are_pronounced_from_the_lexicon(g2p):
    tokens = g2p.text("In 1998 I paid $15, not $1.50, for 50% of 1,000 apples on the 22nd.")
    numbers = {t.text: t.phonemes for t in tokens if t.source == "number"}
    assert numbers == {
        "1998": first("nineteen", "ninety", "eight"), "$15": first("fifteen", "dollars"),
        "$1.50": first("one", "dollar", "fifty", "cents"), "50%": first("fifty", "percent"),
        "1,000": first("one", "thousand"), "22nd": first("twenty", "second")}
    assert [t.text for t in tokens if t.source == "punctuation"] == [",", ",", "."]


@pytest.mark.parametrize("text, tokens", [("24:00", ["24", ":", "00"]), ("1:2:3", ["1", ":", "2", ":", "3"]),
                                          ("10:300", ["10", ":", "300"]), ("10:30:15", ["10", ":", "30", ":", "15"])])
def test_what_is_not_a_time_stays_numbers_and_colons(text, tokens):
    assert [tok for tok, _ in tokenize(text)] == tokens


@pytest.mark.parametrize("text, tokens", [
    ("3-2", ["3", "-", "2"]), ("pages 10-12", ["pages", "10", "-", "12"]), ("5 - 3", ["5", "-", "3"]),
    ("B-52", ["B", "-", "52"]), ("--5", ["--", "5"]), ("(-4)", ["(", "-4", ")"]), ("at -5 °C", ["at", "-5", "°", "C"])])
def test_a_minus_sign_belongs_to_a_number_only_where_it_starts_a_word(text, tokens):
    """Between two numbers or after a letter a hyphen is a range, a score or a name: not a sign."""
    assert [tok for tok, _ in tokenize(text)] == tokens


def test_a_negative_number_is_pronounced(g2p):
    (_, minus_five, _, _) = g2p.text("at -5 °C")
    assert minus_five.source == "number" and minus_five.phonemes == first("minus", "five")


def test_a_time_is_pronounced(g2p):
    seven = g2p.text("at 7:00 p.m.")[1]
    assert seven.phonemes == first("seven") + dotted("o'clock") and seven.source == "number"  # "o'clock": whole


def test_a_huge_number_is_read_digit_by_digit(g2p):
    (tok,) = g2p.text("9" * 5000)  # past num2words' names, and past int()'s default digit limit
    assert tok.source == "number" and tok.phonemes == first("nine") * 5000


def test_contractions_and_possessives_in_the_lexicon(g2p):
    assert pairs(g2p.text("don't she's author's")) == [
        ("don't", ["D", "OW", "N", "T"], "lexicon"), ("she's", ["SH", "IY", "Z"], "lexicon"),
        ("author's", ["AO", "TH", "ER", "Z"], "lexicon")]
    assert g2p.text("don’t")[0].phonemes == ["D", "OW", "N", "T"]  # a curly apostrophe


def test_possessives_not_in_the_lexicon_follow_the_stems_last_phoneme(g2p):
    # aardvark ends in K (voiceless): S; adverb in B (voiced): Z; abacus in S (a sibilant): IH Z
    assert pairs(g2p.text("aardvark's adverb's abacus's aardvarks' dog'll")) == [
        ("aardvark's", first("aardvark") + ["S"], "rule"), ("adverb's", first("adverb") + ["Z"], "rule"),
        ("abacus's", first("abacus") + ["IH", "Z"], "rule"), ("aardvarks'", first("aardvarks"), "rule"),
        ("dog'll", first("dog") + ["L"], "rule")]


def test_hyphenated_words(g2p):
    (whole,) = g2p.text("well-known")  # in CMUdict as a whole
    assert (whole.phonemes, whole.source) == (["W", "EH", "L", "N", "OW", "N"], "lexicon")
    (parts,) = g2p.text("ice-cold")  # not in CMUdict: ice, then cold
    assert (parts.phonemes, parts.source) == (first("ice", "cold"), "rule")
    (joined,) = g2p.text("cup-board")  # not in CMUdict; "cupboard" is: K AH B ER D, not cup + board
    assert (joined.phonemes, joined.source) == (first("cupboard"), "rule")
    assert first("cupboard") != first("cup", "board")
    (mixed,) = g2p.text("blue-zorbix")  # a part the lexicon lacks comes from the model
    assert (mixed.phonemes, mixed.source) == (first("blue") + g2p(["zorbix"])[0], "model")


def test_hyphenated_prefixes_are_the_prefix_and_the_stem(g2p, stress_model):
    # re-sign is not resign (R IH Z AY N), re-cover not recover: re- (R IY) and the stem; likewise co-,
    # pre-, de-, before the joined spelling; the stem by every rule (op's: op + 's) or the model
    assert first("resign") != ["R", "IY"] + first("sign")
    assert pairs(g2p.text("re-sign re-cover co-op's pre-war de-zorbix")) == [
        ("re-sign", ["R", "IY"] + first("sign"), "rule"), ("re-cover", ["R", "IY"] + first("cover"), "rule"),
        ("co-op's", ["K", "OW"] + first("op") + ["S"], "rule"), ("pre-war", ["P", "R", "IY"] + first("war"), "rule"),
        ("de-zorbix", ["D", "IY"] + g2p(["zorbix"])[0], "model")]
    (stressed,) = stress_model.text("re-sign")  # with stress: the prefix's digit, the stem's own
    assert stressed.phonemes == ["R", "IY1"] + list(load_cmudict(True)["sign"][0])


def test_unknown_words_go_to_the_model_in_one_batch(g2p, monkeypatch):
    calls = []
    real_call = G2P.__call__

    def spy(self, words, **kw):
        calls.append(list(words))
        return real_call(self, words, **kw)

    monkeypatch.setattr(G2P, "__call__", spy)
    tokens = g2p.text("The zorbix met a Quentaplo and another zorbix.")
    assert calls == [["quentaplo", "zorbix"]]
    monkeypatch.undo()
    model = {t.text: t.phonemes for t in tokens if t.source == "model"}
    assert model == {"zorbix": g2p(["zorbix"])[0], "Quentaplo": g2p(["quentaplo"])[0]}


def test_without_the_lexicon_every_word_is_the_models(g2p):
    tokens = g2p.text("Hello, 7 ice-cold cats.", lexicon=False)
    assert pairs(tokens) == [
        ("Hello", g2p(["hello"])[0], "model"), (",", [], "punctuation"),
        ("7", g2p(["seven"])[0], "number"), ("ice-cold", g2p(["ice"])[0] + g2p(["cold"])[0], "model"),
        ("cats", g2p(["cats"])[0], "model"), (".", [], "punctuation")]
    assert all(t.alternatives == [] for t in tokens)


def test_accents_other_scripts_symbols_and_emoji_never_fail(g2p):
    assert pairs(g2p.text("Café naïve Привет 😀 @ & #")) == [
        ("Café", first("cafe"), "lexicon"), ("naïve", first("naive"), "lexicon"), ("Привет", [], "unknown"),
        ("😀", [], "punctuation"), ("@", first("at"), "symbol"), ("&", first("and"), "symbol"),
        ("#", [], "punctuation")]


# ---- abbreviations and initialisms ----------------------------------------------------------------
@pytest.mark.parametrize("text, tokens", [
    ("Dr. Smith", ["Dr.", "Smith"]), ("U.S.A.'s GDP.", ["U.S.A.'s", "GDP", "."]),
    ("at 5 p.m., i.e. late", ["at", "5", "p.m.", ",", "i.e.", "late"]), ("J. R. R. Tolkien", ["J.", "R.", "R.", "Tolkien"]),
    # a period after an ordinary word, or a lower-case letter, stays punctuation
    ("Stop. Drama. a.", ["Stop", ".", "Drama", ".", "a", "."]), ("to.It", ["to", ".", "It"]),
    ("Dr.Smith", ["Dr", ".", "Smith"])])
def test_abbreviations_are_one_token_with_their_periods(text, tokens):
    assert [tok for tok, _ in tokenize(text)] == tokens


def test_titles_and_initialisms_are_read_out(g2p):
    tokens = g2p.text("Dr. Smith met Prof. Xu, Mr. Li and Ms. Ng, Jr. at 10 a.m., i.e. in the U.S.'s NLTK room, etc.")
    got = {t.text: (t.phonemes, t.source) for t in tokens}
    assert got["Dr."] == (first("doctor"), "rule")
    assert got["Prof."] == (first("professor"), "rule") and got["Mr."] == (first("mister"), "rule")
    assert got["Ms."] == (dotted("ms."), "lexicon") and got["Jr."] == (first("junior"), "rule")
    assert got["a.m."] == (dotted("a.m."), "lexicon") == (["EY", "EH", "M"], "lexicon")
    assert got["i.e."] == (dotted("i.") + dotted("e."), "rule") == (["AY", "IY"], "rule")  # not in CMUdict
    assert got["U.S.'s"] == (dotted("u.s.") + ["IH", "Z"], "rule")
    assert got["NLTK"] == ([ph for c in "nltk" for ph in dotted(c + ".")], "rule")  # no vowel: spelt
    assert g2p.text("B-B")[0].phonemes == dotted("b.") * 2  # hyphenated: part by part (hypothesis found it)
    assert got["etc."] == (first("et", "cetera"), "rule")
    assert [t.text for t in tokens][-1] == "etc."  # its period is the sentence's


def test_doctor_and_saint_before_a_name_drive_and_street_elsewhere(g2p):
    dr, smith, _, dr2, st, _, _, st2, _, dr3, _ = g2p.text("Dr. Smith Mulholland Dr. St. Louis Elm St. is Dr Who")
    assert (dr.phonemes, dr.alternatives) == (first("doctor"), [first("drive")])
    assert (dr2.phonemes, dr2.alternatives) == (first("drive"), [first("doctor")])
    assert (st.phonemes, st.alternatives) == (first("saint"), [first("street")])
    assert (st2.phonemes, st2.alternatives) == (first("street"), [first("saint")])
    assert dr3.text == "Dr" and dr3.phonemes == first("doctor")  # without the period too
    assert smith.phonemes == first("smith")


def test_initials_and_letters_are_their_names(g2p):
    j, r, _, _, _, b = g2p.text("J. R. R. Tolkien Plan B.")
    assert (j.phonemes, r.phonemes, b.phonemes) == (dotted("j."), dotted("r."), dotted("b."))
    assert g2p.text("A. Lincoln")[0].phonemes == ["EY"] != g2p.text("a lincoln")[0].phonemes  # the name, not AH


def test_abbreviations_without_the_lexicon(g2p):
    dr, _, usa, nltk = g2p.text("Dr. Smith U.S.A. NLTK", lexicon=False)
    assert (dr.phonemes, dr.source) == (g2p(["doctor"])[0], "model")  # the reading, through the model
    assert (usa.phonemes, usa.source) == (dotted("u.") + dotted("s.") + dotted("a."), "rule")  # names: a rule
    assert (nltk.phonemes, nltk.source) == (g2p(["nltk"])[0], "model")  # spelling needs the lexicon's "no"


def test_a_stress_model_stresses_letter_names(stress_model):
    stressed = text_lexicon(True)
    assert stress_model.text("i.e.")[0].phonemes == list(stressed["i."][0]) + list(stressed["e."][0]) == ["AY1", "IY1"]
    assert stress_model.text("i.e.", lexicon=False)[0].phonemes == ["AY1", "IY1"]
    assert stress_model.text("i.e.", lexicon=False, stress=False)[0].phonemes == ["AY", "IY"]


class ConstantModel:
    """A stand-in for G2P: every word is "AH" (the property test needs no real model)."""

    stress = False

    def __call__(self, words, beam=1):
        return [["AH"] for _ in words]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_gives_its_characters_back_in_order(text):
    tokens = pronounce(ConstantModel(), text)
    nfc = unicodedata.normalize("NFC", text)
    assert "".join(t.text for t in tokens) == "".join(nfc.split())
    assert all(t.source in SOURCES and (t.phonemes == []) == (t.source in ("punctuation", "unknown"))
               for t in tokens)


def test_bad_arguments_are_refused(g2p):
    with pytest.raises(TypeError, match="text must be a str"):
        g2p.text(["hello"])
    with pytest.raises(TypeError, match="lexicon must be True or False"):
        g2p.text("hello", lexicon="no")
    with pytest.raises(TypeError, match="stress must be None, True or False"):
        g2p.text("hello", stress=1)
    with pytest.raises(ValueError, match="needs a stress model"):
        g2p.text("hello", stress=True)


def test_an_unstressed_model_gives_no_stress_digits(g2p):
    phonemes = [ph for t in g2p.text("Hello zorbix, 1998.") for ph in t.phonemes]
    assert phonemes and not any(ph[-1].isdigit() for ph in phonemes)
    assert g2p.text("Hello zorbix", stress=False) == g2p.text("Hello zorbix")


def test_a_stress_model_stresses_lexicon_model_and_rules(stress_model):
    assert stress_model.stress
    hello, zorbix, abacus, year = stress_model.text("Hello zorbix abacus's 1998")
    stressed = load_cmudict(stress=True)
    assert hello.phonemes == ["HH", "AH0", "L", "OW1"] == list(stressed["hello"][0])
    assert hello.alternatives == [["HH", "EH0", "L", "OW1"]]
    assert zorbix.phonemes == stress_model(["zorbix"])[0]
    assert abacus.phonemes == list(stressed["abacus"][0]) + ["IH0", "Z"]
    assert year.phonemes == [ph for w in ("nineteen", "ninety", "eight") for ph in stressed[w][0]]
    plain = stress_model.text("Hello zorbix abacus's 1998", stress=False)
    assert [t.phonemes for t in plain] == [first("hello"), [p.rstrip("012") for p in zorbix.phonemes],
                                           first("abacus") + ["IH", "Z"], first("nineteen", "ninety", "eight")]
    assert stress_model.text("Hello", stress=True) == stress_model.text("Hello")


# ---- the command ---------------------------------------------------------------------------------
def test_cli_text_prints_one_line_per_token(tmp_path):
    p = minis2s("g2p", "predict", "--model", "seq2seq", "--text", "I read 2 books, don't you?", cwd=tmp_path)
    assert_ok(p)
    assert p.stdout == ("I\tAY\nread\tR EH D\n2\tT UW\nbooks\tB UH K S\n,\t\n"
                        "don't\tD OW N T\nyou\tY UW\n?\t\n")


def test_cli_text_from_stdin_alternatives_and_no_lexicon(tmp_path):
    args = [sys.executable, "-m", "minis2s", "g2p", "predict", "--model", "seq2seq"]
    for flag in (["--text"], ["--text", "-"]):
        p = subprocess.run([*args, *flag, "--alternatives"], input="Read it.\n", capture_output=True, text=True,
                           cwd=tmp_path, env=dict(os.environ, PYTHONPATH=REPO), check=False)
        assert_ok(p)
        assert p.stdout == "Read\tR EH D\nRead\tR IY D\nit\tIH T\n.\t\n"
    p = minis2s("g2p", "predict", "--model", "seq2seq", "--text", "zorbix hello", "--no-lexicon", cwd=tmp_path)
    assert_ok(p)
    model = G2P("seq2seq")
    assert p.stdout == "".join(f"{w}\t{' '.join(model([w])[0])}\n" for w in ("zorbix", "hello"))


@pytest.mark.parametrize("args, fragment", [
    (["--text", "hi", "cat"], "--text takes the text alone"),
    (["--text", "hi", "--input", "words.txt"], "--text takes the text alone"),
    (["--text", "hi", "--nbest", "2"], "apply to words"),
    (["--text", "hi", "--stress"], "needs a stress model"),
    (["cat", "--no-lexicon"], "--no-lexicon applies to --text"),
    (["cat", "--alternatives"], "--alternatives applies to --text"),
])
def test_cli_text_bad_combinations(tmp_path, args, fragment):
    assert_clean_error(minis2s("g2p", "predict", "--model", "seq2seq", *args, cwd=tmp_path), fragment)


def test_the_shipped_stress_model_stresses_running_text():
    """--model stress: CMUdict's stressed entries, numbers and the model's guesses all carry a
    stress digit on every vowel; stress=False gives the unstressed lexicon back."""
    from minis2s.data.cmudict import load_cmudict
    from minis2s.g2p import G2P, VOWELS

    g2p = G2P("stress")
    assert g2p.stress
    tokens = g2p.text("Hello 1998 zorbix!")
    assert tokens[0].phonemes == ["HH", "AH0", "L", "OW1"] == list(load_cmudict(stress=True)["hello"][0])
    assert [t.source for t in tokens] == ["lexicon", "number", "model", "punctuation"]
    for t in tokens[:3]:
        vowels = [p for p in t.phonemes if p.rstrip("012") in VOWELS]
        assert vowels and all(p[-1] in "012" for p in vowels), t
    assert g2p.text("Hello", stress=False)[0].phonemes == ["HH", "AH", "L", "OW"]
