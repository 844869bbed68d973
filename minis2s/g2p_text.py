"""Running text -> phonemes: the text front end of G2P (``G2P().text(s)``, ``g2p predict --text``).

    >>> from minis2s.g2p import G2P
    >>> [(t.text, " ".join(t.phonemes), t.source) for t in G2P().text("I read 2 books.")]
    [('I', 'AY', 'lexicon'), ('read', 'R EH D', 'lexicon'), ('2', 'T UW', 'number'),
     ('books', 'B UH K S', 'lexicon'), ('.', '', 'punctuation')]

The steps, each a function below, in reading order:
1. ``tokenize``: the text split into numbers, words, abbreviations (``Dr.``, ``U.S.A.``) and
   punctuation, each token as written.
2. Each word is looked up in CMUdict (case ignored, accents folded: ``fold``), whole, then by
   rule: re-, co-, pre-, de- and a hyphen as that prefix and the rest ("re-sign": R IY S AY N);
   another hyphenated word as spelt without its hyphens, else part by part; a contraction or
   possessive as its stem plus a suffix (``'s`` -> S, Z or IH Z after the stem's last phoneme).
   What is in no lexicon goes to the model: every such word of the text in one batched call.
   Abbreviations (``_abbreviation``): initialisms with periods as CMUdict has them ("a.m.",
   "U.S.") or letter by letter ("i.e."), an all-capital word without vowels letter by letter
   ("NLTK"), titles read out ("Prof." professor), "Dr." and "St." as doctor and saint before a
   capitalised word, drive and street elsewhere.
3. Numbers (and times, "10:30") are read out as words (``number_words``, num2words) and those
   words pronounced.

A word with several CMUdict pronunciations (``read``, ``live``) gets the first as ``phonemes``
and the others in ``alternatives``.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

from num2words import num2words

from minis2s.data.cmudict import distinct, load_cmudict, raw_entries, strip_stress

# Where a token's phonemes came from (Token.source).
SOURCES = {
    "lexicon": "the token is a CMUdict entry (first pronunciation; the others in alternatives)",
    "rule": "built from CMUdict entries by a rule: re-/co-/pre-/de- and a stem, a hyphenated word joined or by "
            "parts, a stem plus 's, an abbreviation read out or spelt letter by letter, ...",
    "model": "the model's guess, for the word or for a part of it",
    "number": "a number read out as words (num2words), the words pronounced",
    "symbol": "a symbol read as a word: & and, @ at, + plus, = equals, % percent",
    "punctuation": "no phonemes: punctuation, emoji, any other symbol",
    "unknown": "no phonemes: letters outside a-z even with accents removed (other scripts)",
}


@dataclass
class Token:
    """One token of running text: ``text`` as written, its ``phonemes`` ([] for punctuation),
    their ``source`` (one of ``SOURCES``) and the lexicon's other pronunciations of the token."""

    text: str
    phonemes: list[str]
    source: str
    alternatives: list[list[str]] = field(default_factory=list)


# ---- 1. tokens ----------------------------------------------------------------------------------
_LETTER = r"[^\W\d_]"
_WORD = rf"{_LETTER}+(?:['’]{_LETTER}+)*(?:-{_LETTER}+(?:['’]{_LETTER}+)*)*(?:(?<=[sS])['’](?!{_LETTER}))?"
_TIME = r"(?:[01]?\d|2[0-3]):[0-5]\d(?![\d:])"  # 10:30, 9:05, 23:00 (not 1:2:3, not 10:300)
# A minus sign belongs to a number where it starts a word ("-5", "(-3.5%)", "-$20"), not between two
# ("3-2", "pages 10-12": a range or a score, read as the numbers and a hyphen)
_SIGN = r"(?:(?<![^\s(\[{])[-−](?=[$€£]?\d))?"
_NUMBER = _TIME + rf"|{_SIGN}[$€£]?(?:\d{{1,3}}(?:,\d{{3}})+(?!\d)|\d+)(?:\.\d+)?(?:%|(?:st|nd|rd|th|s)(?![^\W_]))?"
# An initialism with periods ("U.S.A.", "a.m.", "e.g.": single letters, at least one inner period),
# a capital's initial ("J. R. R. Tolkien", "Plan B."), or a title or short form whose period
# belongs to it (``_TITLES``); each may end in 's
_TITLES = ("mrs", "mr", "ms", "dr", "prof", "jr", "sr", "st", "mt", "vs", "etc")
_ABBREV = (rf"(?:{_LETTER}(?:\.{_LETTER})+\.?|(?-i:[A-Z])\.|(?:{'|'.join(_TITLES)})\.)(?:['’]s)?(?![^\W_])")
_TOKEN = re.compile(rf"(?P<number>{_NUMBER})|(?P<abbreviation>{_ABBREV})|(?P<word>{_WORD})|(\S)\4*",
                    re.IGNORECASE)


def tokenize(text: str) -> list[tuple[str, str]]:
    """text -> [(token as written, kind)], kind "number", "word", "abbreviation" (``Dr.``,
    ``U.S.A.``: its periods belong to it) or "other" (a run of one character that is none of
    these: ``...``, ``!``, an emoji). Hyphens and apostrophes inside a word belong to it
    (``well-known``, ``don't``, ``cats'``)."""
    text = unicodedata.normalize("NFC", text)  # "e" + a combining accent -> one letter
    return [(m.group(), m.lastgroup or "other") for m in _TOKEN.finditer(text)]


_FOLDED = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}


def fold(word: str) -> str:
    """A word as the lexicon spells it: lower case, accents removed (NFKD), curly apostrophes
    straight: "Café" -> "cafe", "Straße" -> "strasse", "don’t" -> "don't"."""
    letters = unicodedata.normalize("NFKD", word.lower().replace("’", "'"))
    return "".join(_FOLDED.get(c, c) for c in letters if not unicodedata.combining(c))


# ---- 2. words ------------------------------------------------------------------------------------
_ENTRY = re.compile(r"^[a-z]+(?:['-][a-z]+)*'?$")
_DOTTED_ENTRY = re.compile(r"^[a-z]+(?:\.[a-z]+)*\.$")  # CMUdict's "a.", "u.s.a.", "mr.", "ph.d."


@functools.lru_cache(maxsize=2)
def text_lexicon(stress: bool) -> dict[str, list[tuple[str, ...]]]:
    """CMUdict for running text: ``load_cmudict``'s words plus its entries with apostrophes and
    hyphens (``don't``, ``author's``, ``well-known``) and with periods (``a.`` the letter's name,
    ``u.s.a.``, ``mr.``: only abbreviation tokens reach these), pronunciations merged the same way."""
    words = dict(load_cmudict(stress))
    for word, prons in raw_entries().items():
        if word not in words and (_ENTRY.match(word) or _DOTTED_ENTRY.match(word)):
            words[word] = distinct(prons, stress)
    return words


# Contractions not in CMUdict: the stem, then these phonemes. "'s" (possessive or "is") is
# ``_s_suffix``'s: S after a voiceless consonant, IH Z after a sibilant, Z otherwise.
_SUFFIXES = {"'s": None, "'ll": ("L",), "'ve": ("V",), "'re": ("R",), "'d": ("D",), "'m": ("M",), "'": ()}
_SIBILANTS = {"S", "Z", "SH", "ZH", "CH", "JH"}
_VOICELESS = {"P", "T", "K", "F", "TH"}


def _s_suffix(stem: list[str], stress: bool) -> tuple[str, ...]:
    last = strip_stress(stem[-1:])
    if last and last[0] in _SIBILANTS:
        return ("IH0" if stress else "IH", "Z")
    return ("S",) if last and last[0] in _VOICELESS else ("Z",)


# Prefixes a hyphen marks as such: "re-sign" is re + sign, not "resign" (R IH Z AY N). Measured on
# CMUdict's 16 hyphenated entries of these four whose stem it has: prefix + stem is one of the
# entry's pronunciations 15 times, stress ignored (the joined spelling, where CMUdict has it:
# 5 of 8, against the rule's 8 of 8); the stress digit 1 matched the entries most often (6 of 16,
# 0 and 2: 3 each; CMUdict itself has co-founder K OW1 but co-leader K OW0).
_PREFIXES = {"re-": ("R", "IY1"), "co-": ("K", "OW1"), "pre-": ("P", "R", "IY1"), "de-": ("D", "IY1")}


def _plan_word(word: str, lex: dict | None) -> tuple[str, list]:
    """A folded word -> (source, parts): each part a tuple of phonemes, a word for the model (a
    str of a-z), a suffix of ``_SUFFIXES`` (a str starting with "'") applied to what precedes
    it, or a prefix of ``_PREFIXES`` (a str ending with "-"). ``lex`` None: the model alone
    (rules still apply)."""
    if lex is not None and word in lex:
        return "lexicon", [lex[word][0]]
    prefix = next((p for p in _PREFIXES if word.startswith(p) and len(word) > len(p)), None)
    if prefix is not None:
        source, parts = _plan_word(word[len(prefix):], lex)
        return ("model" if source == "model" else "rule"), [prefix, *parts]
    if "-" in word:
        # the word without its hyphens first ("re-opened" as "reopened", not "re" R EY + "opened"):
        # on CMUdict's 312 hyphenated entries whose joined spelling and parts it also has, the joined
        # word's first pronunciation is one of the entry's 284 times, the parts' 252 times
        joined = word.replace("-", "")
        if lex is not None and joined in lex:
            return "rule", [lex[joined][0]]
        plans = [_plan_word(part, lex) for part in word.split("-")]
        parts = [p for _, ps in plans for p in ps]
    else:
        suffix = next((s for s in _SUFFIXES if word.endswith(s) and len(word) > len(s)), None)
        if suffix is None:
            return "model", [word.replace("'", "")]
        stem_source, parts = _plan_word(word[: -len(suffix)], lex)
        plans, parts = [(stem_source, parts)], [*parts, suffix]
    return ("model" if any(source == "model" for source, _ in plans) else "rule"), parts


# Titles and short forms read as words, pronounced as words are (the lexicon, else the model):
# CMUdict's own first reading is not always the one running text needs ("prof." is P R AO F there,
# "jr." JH UW N ER, "dr." drive). ``_BY_CONTEXT``: the first reading before a capitalised word
# ("Dr. Smith", "St. Louis"), the second elsewhere ("Mulholland Dr.", "Elm St. is"), with or
# without the period ("Dr Smith"); the other reading is the token's alternative. "ms." has no
# reading here: CMUdict's (M IH Z), or the model's for "ms" without the lexicon.
_READINGS = {"mr.": "mister", "mrs.": "missus", "prof.": "professor", "jr.": "junior", "sr.": "senior",
             "mt.": "mount", "vs.": "versus", "etc.": "et cetera"}
_BY_CONTEXT = {"dr": ("doctor", "drive"), "st": ("saint", "street")}


def _letter_names(letters: str, lex: dict | None) -> list:
    """"usa" -> the letters' names, CMUdict's "u.", "s.", "a." entries: a rule's table, so used
    with ``lex`` None too (then as the file has them, stressed: ``pronounce`` strips what it does
    not want)."""
    if lex is not None:
        return [lex[f"{c}."][0] for c in letters]
    return [tuple(raw_entries()[f"{c}."][0].split()) for c in letters]


def _abbreviation(folded: str, capitalised_next: bool, lex: dict | None) -> tuple[str, list, list]:
    """A folded abbreviation token ("u.s.a.", "dr.", "i.e.'s") -> (source, parts, alternative
    readings as parts lists). ``capitalised_next``: the next token is a capitalised word."""
    stem, suffix = (folded[:-2], ["'s"]) if folded.endswith("'s") else (folded, [])
    key, dotted = stem.rstrip("."), stem.rstrip(".") + "."
    if key in _BY_CONTEXT:
        first, second = _BY_CONTEXT[key]
        reading, other = (first, second) if capitalised_next else (second, first)
        return (*_read_as(reading, suffix, lex), [_plan_word(other, lex)[1]])
    if dotted in _READINGS:
        return (*_read_as(_READINGS[dotted], suffix, lex), [])
    if lex is not None and dotted in lex:  # "u.s.a.", "a.m.", "ms.", "ph.d."
        first, *others = lex[dotted]
        return ("rule", [first, *suffix], []) if suffix else ("lexicon", [first], [[o] for o in others])
    letters = key.replace(".", "")
    if len(letters) == key.count(".") + 1:  # single letters ("i.e."): their names
        return "rule", [*_letter_names(letters, lex), *suffix], []
    return (*_read_as(letters, suffix, lex), [])  # "ms" without the lexicon: as a word


def _read_as(words: str, suffix: list, lex: dict | None) -> tuple[str, list]:
    """An abbreviation read as ``words`` ("et cetera") and ``suffix`` -> (source, parts)."""
    plans = [_plan_word(w, lex) for w in words.split()]
    source = "model" if any(source == "model" for source, _ in plans) else "rule"
    return source, [p for _, parts in plans for p in parts] + suffix


_VOWEL = re.compile(r"[aeiouy]")


# ---- 3. numbers ----------------------------------------------------------------------------------
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence")}
_SYMBOLS = {"&": "and", "@": "at", "+": "plus", "=": "equals", "%": "percent"}


def _cardinal(digits: str) -> str:
    """"42" -> "forty-two"; a leading zero ("007") or a number too large for num2words: digit by digit."""
    if (digits.startswith("0") and len(digits) > 1) or len(digits) > 27:  # num2words' limit
        return " ".join(num2words(int(d)) for d in digits)
    return num2words(int(digits))


def _plural(words: str) -> str:
    """"nineteen ninety" -> "nineteen nineties" (for "1990s")."""
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "es" if last.endswith(("s", "x")) else last + "s"
    return f"{head} {last}".strip()


def number_words(token: str) -> str:
    """A number token as words (num2words, English): "1,000" -> "one thousand", "3.14" -> "three
    point one four", "22nd" -> "twenty-second", "$1.50" -> "one dollar fifty cents", "50%" ->
    "fifty percent", "1990s" -> "nineteen nineties", "-5" -> "minus five", a time "10:30" -> "ten thirty" ("9:05" nine
    oh five, "7:00" seven o'clock). A year is four digits from 1100 to 2099 with no comma, sign,
    decimals or ordinal suffix: "1998" -> "nineteen ninety-eight" (so "1500 people" reads "fifteen
    hundred people")."""
    time = re.fullmatch(r"(\d{1,2}):(\d\d)", token)
    if time is not None:
        hours, minutes = num2words(int(time.group(1))), int(time.group(2))
        if minutes == 0:
            return f"{hours} o'clock"
        return f"{hours} {'oh ' if minutes < 10 else ''}{num2words(minutes)}"
    if token[:1] in ("-", "−") and token[1:2] != "":  # "-5" -> "minus five", "-$20" -> "minus twenty dollars"
        rest = token[1:]
        return "minus " + (_cardinal(rest) if re.fullmatch(r"\d{4}", rest) else number_words(rest))  # no year
    m = re.fullmatch(r"([$€£]?)([\d,]+)(?:\.(\d+))?(%|[a-z]*)", token.lower())
    if m is None:
        raise ValueError(f"token {token!r} is not a number")
    currency, digits, decimals, suffix = m.group(1), m.group(2).replace(",", ""), m.group(3), m.group(4)
    if len(digits) > 27:  # beyond num2words' names (octillions): digit by digit
        return _cardinal(digits)
    if suffix in ("st", "nd", "rd", "th") and not (currency or decimals):
        return num2words(int(digits), to="ordinal")
    if currency and (decimals is None or len(decimals) <= 2):
        one, many, cent, cents = _CURRENCIES[currency]
        units, hundredths = int(digits), int((decimals or "0").ljust(2, "0"))
        words = [f"{_cardinal(digits)} {one if units == 1 else many}"] if units or not hundredths else []
        if hundredths:
            words.append(f"{num2words(hundredths)} {cent if hundredths == 1 else cents}")
        return " ".join(words)
    is_year = len(digits) == 4 and "," not in m.group(2) and 1100 <= int(digits) <= 2099 and not decimals
    words = num2words(int(digits), to="year") if is_year else _cardinal(digits)
    if decimals:
        words += " point " + " ".join(num2words(int(d)) for d in decimals)
    if currency:
        words += " " + _CURRENCIES[currency][1]
    return words + " percent" if suffix == "%" else _plural(words) if suffix == "s" else words


# ---- the whole text ------------------------------------------------------------------------------
def pronounce(g2p, text: str, *, lexicon: bool = True, stress: bool | None = None, beam: int = 1) -> list[Token]:
    """``G2P.text``: running text -> one ``Token`` per token, in reading order. ``lexicon``
    False: every word from the model (rules and number reading still apply). ``stress``: None
    as the model (a stress model: stress digits everywhere), False: none, True: stress digits
    (ValueError unless ``g2p.stress``). ``beam``: the model's beam width."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(lexicon, bool):
        raise TypeError(f"lexicon must be True or False, got {lexicon!r}")
    if stress is not None and not isinstance(stress, bool):
        raise TypeError(f"stress must be None, True or False, got {stress!r}")
    if stress and not g2p.stress:
        raise ValueError("stress=True (--stress) needs a stress model (trained with `g2p train --stress`); "
                         "this model's phonemes carry no stress digits")
    stressed = g2p.stress if stress is None else stress
    lex = text_lexicon(stressed) if lexicon else None
    toks = tokenize(text)
    plans = [_plan_token(tok, kind, lex, toks[i + 1] if i + 1 < len(toks) else None) for i, (tok, kind) in
             enumerate(toks)]
    model_words = sorted({p for _, _, parts, others in plans for ps in (parts, *others) for p in ps
                          if _for_model(p)})
    guesses = dict(zip(model_words, g2p(model_words, beam=beam))) if model_words else {}

    def phonemes_of(parts) -> list[str]:
        phonemes: list[str] = []
        for p in parts:
            if isinstance(p, tuple):  # the lexicon's (already as ``stressed``) or a letter's name
                phonemes += p if stressed else strip_stress(p)
            elif _for_model(p):
                phonemes += guesses[p] if stressed else strip_stress(guesses[p])
            elif p in _PREFIXES:
                phonemes += _PREFIXES[p] if stressed else strip_stress(_PREFIXES[p])
            else:
                phonemes += _s_suffix(phonemes, stressed) if p == "'s" else _SUFFIXES[p]
        return phonemes

    return [Token(tok, phonemes_of(parts), source, [phonemes_of(o) for o in others])
            for tok, source, parts, others in plans]


def _for_model(part) -> bool:
    """Whether a part of ``_plan_word`` is a word for the model (not phonemes, a suffix or a prefix)."""
    return isinstance(part, str) and part[0] != "'" and part[-1] != "-"


def _plan_token(tok: str, kind: str, lex: dict | None, following=None) -> tuple[str, str, list, list]:
    """A token -> (token, source, parts, alternative readings as lists of parts: the lexicon's
    other pronunciations, or an abbreviation's other reading), parts as in ``_plan_word``;
    ``following``: the next (token, kind), which "Dr." and "St." read."""
    if kind == "number":
        words = re.findall(r"[a-z]+(?:'[a-z]+)?", number_words(tok))  # "o'clock" whole
        return tok, "number", [p for w in words for p in _plan_word(w, lex)[1]], []
    capitalised_next = following is not None and following[1] == "word" and following[0][:1].isupper()
    if kind == "abbreviation":
        return (tok, *_abbreviation(fold(tok), capitalised_next, lex))
    if kind == "word":
        word = fold(tok)
        if not _ENTRY.match(word):
            return tok, "unknown", [], []
        if word in _BY_CONTEXT:  # "Dr Smith", without the period
            return (tok, *_abbreviation(word, capitalised_next, lex))
        if lex is not None and word not in lex and len(word) > 1 and word.isalpha() and tok.isupper() and \
                not _VOWEL.search(word):
            return tok, "rule", _letter_names(word, lex), []  # "NLTK": no vowel to read it by
        source, parts = _plan_word(word, lex)
        return tok, source, parts, [[o] for o in lex[word][1:]] if source == "lexicon" else []
    if tok in _SYMBOLS:
        return tok, "symbol", _plan_word(_SYMBOLS[tok], lex)[1], []
    return tok, "punctuation", [], []
