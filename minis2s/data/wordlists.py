"""English words that CMUdict does not have: the unlabelled side of a G2P transfer set.

Sequence-level distillation (Kim & Rush 2016) and its G2P form (Sun et al. 2019) train a
student on what the teachers say about words the student has no reference for. On CMUdict's
own training words that teaches nothing: the ensemble reproduces their references (greedy WER
0.87% on 3,000 of them, benchmarks/NOTES.md). So the words come from elsewhere: the word lists
of the ``english-words`` package (web2 and GCIDE, 262,740 distinct ``[a-z]+`` words), minus
every word CMUdict holds in any split, so that no dev or test word reaches a student.

The lists run longer than CMUdict (mean 9.5 letters against 7.4) and hold more Latin
taxonomy; ``sample_like`` draws as many words of each length as CMUdict's training split has
in proportion, so the student's data keeps CMUdict's length distribution.
"""
from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"^[a-z]+$")
SOURCES = ("web2", "gcide")


def english_words(exclude) -> list[str]:
    """Every lower-case ``[a-z]+`` word of the ``english-words`` lists that is not in
    ``exclude`` (a set or dict of words), sorted."""
    try:
        from english_words import get_english_words_set
    except ImportError as e:
        raise RuntimeError("a transfer set needs the 'english-words' package: pip install 'minis2s[distill]'") from e
    words = get_english_words_set(list(SOURCES), lower=True, alpha=True)
    return sorted(w for w in words if _WORD.match(w) and w not in exclude)


def sample_like(candidates, like, n: int, *, seed: int = 0) -> list[str]:
    """``n`` distinct words of ``candidates`` drawn so that their lengths follow those of the
    words ``like`` (per length L: round(n * share of L in ``like``), or every candidate of
    length L if there are fewer); lengths ``like`` never has are not drawn. Sorted; the same
    ``seed`` and inputs give the same words."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    like_lengths = np.bincount([len(w) for w in like])
    if like_lengths.sum() == 0:
        raise ValueError("like holds no words to take the lengths from")
    share = like_lengths / like_lengths.sum()
    by_length: dict[int, list[str]] = {}
    for w in sorted(set(candidates)):
        if len(w) < len(share) and share[len(w)] > 0:
            by_length.setdefault(len(w), []).append(w)
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for length, words in sorted(by_length.items()):
        k = min(len(words), round(n * float(share[length])))
        out.extend(words[i] for i in rng.choice(len(words), size=k, replace=False))
    return sorted(out)
