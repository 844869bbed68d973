"""Data sets minis2s makes itself (nothing is downloaded), written as TSV files for ``read_pairs``.

* ``dates``: a date in a human format -> the same date in ISO 8601, e.g.
  ``feb 10, 1924 -> 1924-02-10``. A small translation task with real structure (month names,
  day/month order, zero padding) that trains in minutes.
* ``write_cmudict``: the CMU Pronouncing Dictionary split of ``minis2s.data.cmudict`` as
  ``word -> P H O N E S`` (g2p) or the mirror (p2g), so the generic tools can train on it.
"""
from __future__ import annotations

import calendar
import datetime
import os

import numpy as np

from minis2s.data.cmudict import SPLITS, load_split, word_pairs
from minis2s.data.pairs import write_pairs

EXAMPLES = ("dates",)
DIRECTIONS = ("g2p", "p2g")

_FIRST, _LAST = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)
_MONTHS = [calendar.month_name[m].lower() for m in range(1, 13)]  # "january", ...
_MONTHS_ABBR = [calendar.month_abbr[m].lower() for m in range(1, 13)]  # "jan", ...


def _locale_free_months() -> None:
    # calendar's names follow the C locale unless a program calls setlocale; the data must not
    # change with the machine's language, so refuse rather than write "février".
    if _MONTHS[0] != "january" or _MONTHS_ABBR[1] != "feb":
        raise RuntimeError("calendar month names are not English (setlocale was called): "
                           "the dates data set needs the C locale")


# The source formats, lowercase. m/d/y is the US order, so "2/10/1924" is 10 February.
_FORMATS = (
    lambda d: f"{_MONTHS[d.month - 1]} {d.day} {d.year}",  # february 10 1924
    lambda d: f"{_MONTHS_ABBR[d.month - 1]} {d.day}, {d.year}",  # feb 10, 1924
    lambda d: f"{d.day} {_MONTHS[d.month - 1]} {d.year}",  # 10 february 1924
    lambda d: f"{d.day} {_MONTHS_ABBR[d.month - 1]} {d.year}",  # 10 feb 1924
    lambda d: f"{d.month}/{d.day}/{d.year}",  # 2/10/1924
    lambda d: f"{d.year} {_MONTHS[d.month - 1]} {d.day}",  # 1924 february 10
)
N_DATES = (_LAST - _FIRST).days + 1  # 73,049 days: the most examples ``dates`` can give


def _check_count(name: str, n, minimum: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")


def dates(n: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (source, target) pairs: a date between 1900-01-01 and 2099-12-31 in one of six
    human formats (chosen at random), and the same date as ISO ``YYYY-MM-DD``.

    Every pair has a different date, so sources are distinct and consecutive parts of the list
    (``write_example``'s splits) share no date, in any format. A pure function of ``(n, seed)``.
    """
    _check_count("n", n, 1)
    if n > N_DATES:
        raise ValueError(f"n must be at most {N_DATES:,} (one pair per day from {_FIRST} to {_LAST}), "
                         f"got {n:,}")
    _locale_free_months()
    rng = np.random.default_rng(seed)
    days = rng.choice(N_DATES, size=n, replace=False)
    formats = rng.integers(0, len(_FORMATS), size=n)
    out = []
    for offset, f in zip(days.tolist(), formats.tolist()):
        d = _FIRST + datetime.timedelta(days=offset)
        out.append((_FORMATS[f](d), d.isoformat()))
    return out


def _refuse_existing(paths) -> None:
    for path in paths:
        if os.path.exists(path):
            raise ValueError(f"{path} already exists: refusing to overwrite it "
                             "(delete it or pick another folder)")


def write_example(name: str, out_dir, *, n_train: int, n_dev: int, n_test: int,
                  seed: int = 0) -> dict[str, str]:
    """Write the example data set ``name`` (one of EXAMPLES) as ``out_dir/{name}-{split}.tsv`` for
    the splits train, dev and test, with no source in two splits. Returns {split: path}.
    An existing file is a ValueError; nothing is written then."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}: known examples are {EXAMPLES}")
    counts = {"train": n_train, "dev": n_dev, "test": n_test}
    for split, n in counts.items():
        _check_count(f"n_{split}", n, 1)
    paths = {split: os.path.join(os.fspath(out_dir), f"{name}-{split}.tsv") for split in counts}
    _refuse_existing(paths.values())
    pairs = dates(sum(counts.values()), seed=seed)  # distinct dates, cut into consecutive parts
    start = 0
    for split, n in counts.items():
        write_pairs(paths[split], pairs[start:start + n])
        start += n
    return paths


def write_cmudict(out_dir, *, direction: str = "g2p") -> dict[str, str]:
    """Write the CMUdict split (``minis2s.data.cmudict.load_split``) as
    ``out_dir/cmudict-{direction}-{split}.tsv``, one line per (word, pronunciation): words sorted,
    a word's pronunciations in cmudict order. ``direction`` "g2p": ``word<TAB>PH O N E S``;
    "p2g": ``PH O N E S<TAB>word``. Returns {split: path}; an existing file is a ValueError."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    folder = os.fspath(out_dir)
    paths = {split: os.path.join(folder, f"cmudict-{direction}-{split}.tsv") for split in SPLITS}
    _refuse_existing(paths.values())
    for split in SPLITS:
        pairs = word_pairs(load_split(split))
        if direction == "p2g":
            pairs = [(phones, word) for word, phones in pairs]
        write_pairs(paths[split], pairs)
    return paths
