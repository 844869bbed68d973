"""Generated data sets (minis2s/data/examples.py): dates whose ISO target is the date the source
names, reproducible and distinct, split into disjoint files; CMUdict exported line for line."""
import datetime
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minis2s.data import read_pairs
from minis2s.data.cmudict import load_split
from minis2s.data.examples import EXAMPLES, N_DATES, dates, write_cmudict, write_example

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]


def parse_source(src: str) -> datetime.date:
    """An independent reader of the source formats (not the generator run backwards)."""
    def month(word):
        for i, name in enumerate(MONTHS, 1):
            if word == name or word == name[:3]:
                return i
        raise AssertionError(f"not a month: {word!r} in {src!r}")
    patterns = [
        (r"([a-z]+) (\d{1,2}),? (\d{4})", lambda m: (int(m[3]), month(m[1]), int(m[2]))),  # feb 10, 1924
        (r"(\d{1,2}) ([a-z]+) (\d{4})", lambda m: (int(m[3]), month(m[2]), int(m[1]))),  # 10 feb 1924
        (r"(\d{1,2})/(\d{1,2})/(\d{4})", lambda m: (int(m[3]), int(m[1]), int(m[2]))),  # 2/10/1924
        (r"(\d{4}) ([a-z]+) (\d{1,2})", lambda m: (int(m[1]), month(m[2]), int(m[3]))),  # 1924 february 10
    ]
    for pattern, ymd in patterns:
        m = re.fullmatch(pattern, src)
        if m:
            return datetime.date(*ymd(m))
    raise AssertionError(f"no known format: {src!r}")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_dates_targets_are_the_sources_dates_in_iso(seed):
    pairs = dates(300, seed=seed)
    assert len(pairs) == 300
    for src, trg in pairs:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", trg)
        d = datetime.date.fromisoformat(trg)
        assert datetime.date(1900, 1, 1) <= d <= datetime.date(2099, 12, 31)
        assert parse_source(src) == d, (src, trg)
        assert src == src.lower()
    assert len({s for s, _ in pairs}) == len({t for _, t in pairs}) == 300  # distinct sources, dates


def test_dates_are_deterministic_and_use_several_formats():
    assert dates(500, seed=3) == dates(500, seed=3)
    assert dates(500, seed=3) != dates(500, seed=4)
    def shape(src):  # 4-digit year Y, other numbers 9, full month name F, abbreviated A
        src = re.sub(r"\d+", lambda m: "Y" if len(m[0]) == 4 else "9", src)
        return re.sub(r"[a-z]+", lambda m: "F" if m[0] in MONTHS else "A", src)
    six = {"F 9 Y", "A 9, Y", "9 F Y", "9 A Y", "9/9/Y", "Y F 9"}
    shapes = {shape(s) for s, _ in dates(2000)}
    assert six <= shapes <= six | {"F 9, Y"}  # "may" is its own abbreviation


def test_dates_bad_counts():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            dates(bad)
    with pytest.raises(ValueError, match="n must be at most 73,049"):
        dates(N_DATES + 1)


def test_write_example_disjoint_splits_and_no_overwrite(tmp_path):
    paths = write_example("dates", tmp_path, n_train=300, n_dev=50, n_test=60, seed=1)
    assert paths == {s: os.path.join(str(tmp_path), f"dates-{s}.tsv") for s in ("train", "dev", "test")}
    splits = {s: read_pairs(p) for s, p in paths.items()}
    assert {s: len(p) for s, p in splits.items()} == {"train": 300, "dev": 50, "test": 60}
    dates_of = {s: set(p.trg) for s, p in splits.items()}
    assert not (dates_of["train"] & dates_of["dev"] or dates_of["train"] & dates_of["test"]
                or dates_of["dev"] & dates_of["test"])  # no date, so no source, in two splits
    assert list(splits["train"]) == dates(410, seed=1)[:300]
    before = Path(paths["dev"]).read_bytes()
    os.remove(paths["train"])
    with pytest.raises(ValueError, match=r"dates-dev\.tsv already exists: refusing to overwrite"):
        write_example("dates", tmp_path, n_train=5, n_dev=5, n_test=5)
    assert Path(paths["dev"]).read_bytes() == before and not os.path.exists(paths["train"])  # none written


def test_write_example_bad_arguments(tmp_path):
    known = re.escape(str(EXAMPLES))
    with pytest.raises(ValueError, match=rf"unknown example 'numbers': known examples are {known}"):
        write_example("numbers", tmp_path, n_train=1, n_dev=1, n_test=1)
    with pytest.raises(ValueError, match="n_dev must be an integer >= 1"):
        write_example("dates", tmp_path, n_train=10, n_dev=0, n_test=1)
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def cmudict_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmu")
    return write_cmudict(out), write_cmudict(out, direction="p2g")


def test_write_cmudict_dev_has_one_line_per_pronunciation(cmudict_files):
    g2p, _ = cmudict_files
    dev = load_split("dev")
    lines = Path(g2p["dev"]).read_text(encoding="utf-8").splitlines()
    assert len(lines) == sum(len(prons) for prons in dev.values())
    assert lines == [f"{w}\t{' '.join(p)}" for w, prons in dev.items() for p in prons]
    assert os.path.basename(g2p["dev"]) == "cmudict-g2p-dev.tsv" and set(g2p) == {"train", "dev", "test"}


def test_write_cmudict_p2g_is_the_mirror(cmudict_files):
    g2p, p2g = cmudict_files
    assert [(t, s) for s, t in read_pairs(g2p["dev"])] == list(read_pairs(p2g["dev"]))
    assert os.path.basename(p2g["test"]) == "cmudict-p2g-test.tsv"


def test_write_cmudict_refuses_overwrite_and_bad_direction(cmudict_files, tmp_path):
    g2p, _ = cmudict_files
    with pytest.raises(ValueError, match="cmudict-g2p-train.tsv already exists"):
        write_cmudict(os.path.dirname(g2p["train"]))
    with pytest.raises(ValueError, match=r"direction must be one of \('g2p', 'p2g'\), got 'x'"):
        write_cmudict(tmp_path, direction="x")
