"""Parallel data files (minis2s/data/pairs.py): what TSV and JSONL readers accept, the one-line
errors (file and line) for what they refuse, and write -> read round trips."""
import json
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minis2s.data import Pairs, read_pairs, write_pairs


def write_bytes(tmp_path, name, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# ---- TSV -----------------------------------------------------------------------------------------
def test_tsv_reads_pairs_and_keeps_spaces_inside_fields(tmp_path):
    path = write_bytes(tmp_path, "a.tsv", b"hello\tbonjour\n two words \t deux mots\n")
    p = read_pairs(path)
    assert p.src == ["hello", " two words "] and p.trg == ["bonjour", " deux mots"]
    assert list(p) == [("hello", "bonjour"), (" two words ", " deux mots")]
    assert len(p) == 2 and p.origin == path and p.blank_lines == 0


def test_tsv_lines_end_at_newline_only(tmp_path):
    # str.splitlines would also split at these; in a field they are data
    path = write_bytes(tmp_path, "s.tsv", "a\u2028b\x0bc\tx\x1cy\x85z\x0c\n".encode())
    assert list(read_pairs(path)) == [("a\u2028b\x0bc", "x\x1cy\x85z\x0c")]


def test_tsv_bom_crlf_and_missing_final_newline(tmp_path):
    plain = read_pairs(write_bytes(tmp_path, "plain.tsv", "été\tsummer\nchat\tcat\n".encode()))
    for name, data in [("bom.tsv", "\ufeffété\tsummer\nchat\tcat\n".encode()),
                       ("crlf.tsv", b"\xef\xbb\xbf" + "été\tsummer\r\nchat\tcat\r\n".encode()),
                       ("no-final-newline.tsv", "été\tsummer\nchat\tcat".encode())]:
        p = read_pairs(write_bytes(tmp_path, name, data))
        assert (p.src, p.trg) == (plain.src, plain.trg), name


def test_tsv_blank_lines_are_skipped_and_counted(tmp_path):
    path = write_bytes(tmp_path, "b.tsv", b"\na\tb\n   \n\t\n\r\nc\td\n\n")
    p = read_pairs(path)
    assert list(p) == [("a", "b"), ("c", "d")]
    assert p.blank_lines == 5  # "", "   ", "\t", "\r" and the last, empty line


def test_tsv_field_count_error_names_the_line(tmp_path):
    lines = [f"w{i}\tt{i}" for i in range(1, 17)] + ["only-one-field"] + ["x\ty"] * 3
    path = write_bytes(tmp_path, "bad.tsv", ("\n".join(lines) + "\n").encode())
    with pytest.raises(ValueError) as e:
        read_pairs(path)
    assert str(e.value) == f"{path}: line 17: expected 2 tab-separated fields, got 1"
    path3 = write_bytes(tmp_path, "three.tsv", b"a\tb\n\nc\td\te\n")
    with pytest.raises(ValueError) as e:
        read_pairs(path3)
    assert str(e.value) == f"{path3}: line 3: expected 2 tab-separated fields, got 3"


@pytest.mark.parametrize("line,side", [(b"a\t", "target"), (b"\tb", "source"), (b"a\t\r", "target")])
def test_tsv_empty_field_error(tmp_path, line, side):
    path = write_bytes(tmp_path, "e.tsv", b"x\ty\nz\tw\n" + line + b"\n")
    with pytest.raises(ValueError) as e:
        read_pairs(path)
    assert str(e.value) == f"{path}: line 3: empty {side}"


def test_invalid_utf8_error_names_its_line(tmp_path):
    path = write_bytes(tmp_path, "u.tsv", "a\tb\nc\td\né\tf\n".encode() + b"g\t\xff\xfe\n")
    with pytest.raises(ValueError) as e:
        read_pairs(path)
    assert str(e.value) == f"{path}: line 4: not valid UTF-8"


def test_missing_file_empty_file_and_folder(tmp_path):
    missing = str(tmp_path / "nope.tsv")
    with pytest.raises(FileNotFoundError) as e:
        read_pairs(missing, name="--train")
    assert str(e.value) == f"--train {missing!r} does not exist"
    for name, data in [("empty.tsv", b""), ("blank.tsv", b"\n \n\r\n"), ("empty.jsonl", b"\n")]:
        path = write_bytes(tmp_path, name, data)
        with pytest.raises(ValueError) as e:
            read_pairs(path)
        assert str(e.value) == f"{path}: no (source, target) pairs"
    with pytest.raises(ValueError, match="is a directory"):
        read_pairs(tmp_path)


def test_pathlike_is_accepted(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("a\tb\n", encoding="utf-8")
    assert list(read_pairs(path)) == [("a", "b")]


# ---- JSONL ---------------------------------------------------------------------------------------
def test_jsonl_reads_objects_and_ignores_extra_keys(tmp_path):
    rows = [{"src": "tab\there", "trg": "new\nline", "id": 7}, {"trg": " b ", "src": "a"}]
    data = "\ufeff" + "\r\n".join(json.dumps(r) for r in rows) + "\r\n\n"
    p = read_pairs(write_bytes(tmp_path, "d.JSONL", data.encode()))  # the extension's case does not matter
    assert list(p) == [("tab\there", "new\nline"), ("a", " b ")] and p.blank_lines == 1


@pytest.mark.parametrize("line,message", [
    ('{"src": "a", "trg": ', r"line 2: not valid JSON \(Expecting value at column 21\)"),
    ('["a", "b"]', r'line 2: expected a JSON object with "src" and "trg", got list'),
    ('{"src": "a"}', r'line 2: missing key "trg"'),
    ('{"trg": "a"}', r'line 2: missing key "src"'),
    ('{"src": 3, "trg": "a"}', r'line 2: "src" must be a string, got int'),
    ('{"src": "a", "trg": null}', r'line 2: "trg" must be a string, got NoneType'),
    ('{"src": "", "trg": "a"}', r"line 2: empty source"),
    ('{"src": "a", "trg": ""}', r"line 2: empty target"),
    ('{"src": "\\ud800", "trg": "a"}', r"line 2: the source is not valid Unicode"),
])
def test_jsonl_bad_lines(tmp_path, line, message):
    path = write_bytes(tmp_path, "bad.jsonl", ('{"src": "ok", "trg": "ok"}\n' + line + "\n").encode())
    with pytest.raises(ValueError, match="^" + re.escape(path) + ": " + message):
        read_pairs(path)


# ---- lists and Pairs -----------------------------------------------------------------------------
def test_list_input_and_pairs_passthrough():
    p = read_pairs([("a", "b"), ["c ", " d"]])
    assert list(p) == [("a", "b"), ("c ", " d")] and p.origin == "<list>" and p.blank_lines == 0
    assert read_pairs(p) is p
    assert list(read_pairs((("x", "y"),))) == [("x", "y")]


@pytest.mark.parametrize("item,error,message", [
    (("a",), TypeError, r"--train\[1\]: expected a \(source, target\) pair of strings, got \('a',\)"),
    (("a", "b", "c"), TypeError, r"--train\[1\]: expected a \(source, target\) pair"),
    (("a", 3), TypeError, r"--train\[1\]: expected a \(source, target\) pair of strings, got \('a', 3\)"),
    ("ab", TypeError, r"--train\[1\]: expected"),
    (("", "b"), ValueError, r"^--train\[1\]: empty source$"),
    (("a", ""), ValueError, r"^--train\[1\]: empty target$"),
])
def test_list_bad_items_name_the_index(item, error, message):
    with pytest.raises(error, match=message):
        read_pairs([("ok", "ok"), item], name="--train")


def test_bad_data_type_and_empty_list():
    with pytest.raises(ValueError, match=r"^data: no \(source, target\) pairs$"):
        read_pairs([])
    with pytest.raises(TypeError, match="data: expected a file path"):
        read_pairs(42)


def test_pairs_head():
    p = read_pairs([("a", "1"), ("b", "2"), ("c", "3")])
    h = p.head(2)
    assert list(h) == [("a", "1"), ("b", "2")] and h.origin == p.origin
    assert list(p.head(10)) == list(p) and len(p) == 3  # head does not change p
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            p.head(bad)
    with pytest.raises(ValueError, match="2 sources but 1 targets"):
        Pairs(["a", "b"], ["c"], "<list>")


# ---- writing -------------------------------------------------------------------------------------
def test_write_refuses_what_tsv_cannot_hold(tmp_path):
    path = tmp_path / "out.tsv"
    for pair, what in [(("a\tb", "c"), "the source contains a tab"),
                       (("a", "b\nc"), "the target contains a newline"),
                       (("a", "b\r"), "the target contains a carriage return"),
                       ((" ", "\t"), "the target contains a tab"),
                       ((" ", "  "), "source and target are only whitespace")]:
        with pytest.raises(ValueError, match=r"^pairs\[1\]: " + what):
            write_pairs(path, [("ok", "ok"), pair])
    assert not path.exists()  # nothing half-written
    write_pairs(tmp_path / "out.jsonl", [("a\tb", "c\r\nd"), (" ", "  ")])  # JSONL holds anything
    assert list(read_pairs(tmp_path / "out.jsonl")) == [("a\tb", "c\r\nd"), (" ", "  ")]
    with pytest.raises(ValueError, match=r"^pairs\[0\]: empty target$"):
        write_pairs(path, Pairs(["a"], [""], "<list>"))  # a hand-made Pairs is checked too
    with pytest.raises(TypeError, match="got the path"):
        write_pairs(path, str(tmp_path / "out.jsonl"))


def test_write_creates_folders_and_replaces_atomically(tmp_path):
    path = tmp_path / "deep" / "er" / "x.tsv"
    write_pairs(path, [("a", "b")])
    write_pairs(path, read_pairs([("c", "d"), ("e", "f")]))
    assert path.read_bytes() == b"c\td\ne\tf\n"
    assert os.listdir(path.parent) == ["x.tsv"]  # no temporary file left behind


# A field: any text without tab/newline/CR (TSV's separators), not empty. A line whose fields are
# both whitespace would read back as blank, so at least one field is not only whitespace.
tsv_field = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\t\n\r"), min_size=1)
tsv_pair = st.tuples(tsv_field, tsv_field).filter(lambda p: (p[0] + p[1]).strip())
any_field = st.text(alphabet=st.characters(codec="utf-8"), min_size=1)


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(tsv_pair, min_size=1, max_size=8))
def test_tsv_write_read_round_trip(tmp_path_factory, pairs):
    path = tmp_path_factory.mktemp("rt") / "p.tsv"
    write_pairs(path, pairs)
    back = read_pairs(path)
    assert list(back) == pairs and back.blank_lines == 0


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(any_field, any_field), min_size=1, max_size=8))
def test_jsonl_write_read_round_trip(tmp_path_factory, pairs):
    path = tmp_path_factory.mktemp("rt") / "p.jsonl"
    write_pairs(path, pairs)
    assert list(read_pairs(path)) == pairs
