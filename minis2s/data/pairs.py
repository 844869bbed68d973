"""Parallel data: (source, target) string pairs, read from a TSV or JSONL file or a Python list.

Two file formats, chosen by the file's extension:

* ``*.jsonl``: one JSON object per line, ``{"src": "...", "trg": "..."}`` (other keys ignored).
  Any string fits, tabs and newlines included.
* anything else, TSV: ``source<TAB>target`` per line. A field cannot hold a tab or a line break.

Reading is UTF-8 (a leading BOM removed), accepts ``\\r\\n`` line ends, and skips lines that are
blank (only whitespace), counting them in ``Pairs.blank_lines``. Nothing else is stripped: a
field's spaces are data. Lines are split on ``\\n`` alone, not ``str.splitlines``, whose other
line breaks (``\\x0b``, ``\\x1c``, ``\\u2028``, ...) are characters a field may hold.

Bad input is a one-line error naming the file and the 1-based line (``train.tsv: line 17:
expected 2 tab-separated fields, got 1``), so a user can open the file at the line.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from minis2s.atomic import atomic_write_bytes


@dataclass
class Pairs:
    """Parallel (source, target) strings read from one place.

    ``src[i]`` and ``trg[i]`` are the i-th pair, both non-empty strings. ``origin`` is the file
    path they came from, or ``"<list>"``; ``blank_lines`` counts blank lines skipped while
    reading (0 for a list).
    """

    src: list[str]
    trg: list[str]
    origin: str
    blank_lines: int = field(default=0)

    def __post_init__(self):
        if len(self.src) != len(self.trg):
            raise ValueError(f"Pairs: {len(self.src)} sources but {len(self.trg)} targets")

    def __len__(self) -> int:
        return len(self.src)

    def __iter__(self):
        """Yields ``(src, trg)`` tuples."""
        return zip(self.src, self.trg)

    def head(self, n: int) -> Pairs:
        """The first ``n`` pairs (all of them when there are fewer), same origin and blank count."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"head: n must be an integer >= 1, got {n!r}")
        return Pairs(self.src[:n], self.trg[:n], self.origin, self.blank_lines)


def _is_jsonl(path: str) -> bool:
    return path.lower().endswith(".jsonl")


def _check_field(where: str, side: str, text) -> None:
    """One field (``side`` is "source" or "target"): a non-empty str that UTF-8 can encode."""
    if not isinstance(text, str):
        raise TypeError(f"{where}: the {side} must be a string, got {type(text).__name__}")
    if not text:
        raise ValueError(f"{where}: empty {side}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON's "\ud800" escape can produce
        raise ValueError(f"{where}: the {side} is not valid Unicode (a lone surrogate)") from None


def _decode(path: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}: line {line}: not valid UTF-8") from None
    return text.removeprefix("\ufeff")


def _parse_tsv_line(where: str, line: str) -> tuple[str, str]:
    fields = line.split("\t")
    if len(fields) != 2:
        raise ValueError(f"{where}: expected 2 tab-separated fields, got {len(fields)}")
    return fields[0], fields[1]


def _parse_jsonl_line(where: str, line: str) -> tuple[str, str]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    # ValueError, not TypeError, below: the file's content is wrong, not the caller's argument
    if not isinstance(obj, dict):
        raise ValueError(  # noqa: TRY004
            f'{where}: expected a JSON object with "src" and "trg", got {type(obj).__name__}')
    for key in ("src", "trg"):
        if key not in obj:
            raise ValueError(f'{where}: missing key "{key}"')
        if not isinstance(obj[key], str):
            got = type(obj[key]).__name__
            raise ValueError(f'{where}: "{key}" must be a string, got {got}')  # noqa: TRY004
    return obj["src"], obj["trg"]


def split_lines(text: str) -> list[str]:
    """Text -> its lines without their ends (``\n``, or ``\r\n``); the newline that ends the
    last line does not start another."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_lines(path, *, name: str = "file") -> list[str]:
    """The lines of a UTF-8 file (a BOM dropped; a pipe or /dev/stdin read too), with a
    one-line error naming ``name`` and the path, or the line that is not UTF-8."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name} {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a directory, not a file")
    with open(path, "rb") as f:
        return split_lines(_decode(path, f.read()))


def _read_file(path: str, name: str) -> Pairs:
    lines = read_lines(path, name=name)
    parse = _parse_jsonl_line if _is_jsonl(path) else _parse_tsv_line
    src, trg, blank = [], [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            blank += 1
            continue
        where = f"{path}: line {number}"
        s, t = parse(where, line)
        _check_field(where, "source", s)
        _check_field(where, "target", t)
        src.append(s)
        trg.append(t)
    if not src:
        raise ValueError(f"{path}: no (source, target) pairs")
    return Pairs(src, trg, path, blank)


def _read_list(items, name: str) -> Pairs:
    src, trg = [], []
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if (not isinstance(item, (list, tuple)) or len(item) != 2
                or not isinstance(item[0], str) or not isinstance(item[1], str)):
            raise TypeError(f"{where}: expected a (source, target) pair of strings, got {item!r:.80}")
        _check_field(where, "source", item[0])
        _check_field(where, "target", item[1])
        src.append(item[0])
        trg.append(item[1])
    if not src:
        raise ValueError(f"{name}: no (source, target) pairs")
    return Pairs(src, trg, "<list>")


def read_pairs(data, *, name: str = "data") -> Pairs:
    """``data`` -> Pairs. ``data`` is a Pairs (returned as is), a path (str or os.PathLike) to a
    ``.jsonl`` file or a TSV file (any other extension), or a list/tuple of (source, target)
    pairs of strings. ``name`` is what messages call the argument (e.g. ``"--train"``).

    Raises FileNotFoundError for a missing file, ValueError naming the file and line (or the
    list index) for a malformed line, an empty field, invalid UTF-8 or no pairs at all, and
    TypeError for a list item that is not a pair of strings.
    """
    if isinstance(data, Pairs):
        return data
    if isinstance(data, (str, os.PathLike)):
        return _read_file(os.fspath(data), name)
    if isinstance(data, (list, tuple)):
        return _read_list(data, name)
    raise TypeError(f"{name}: expected a file path, a list of (source, target) pairs or Pairs, "
                    f"got {type(data).__name__}")


def _tsv_line(i: int, src: str, trg: str) -> str:
    for side, text in (("source", src), ("target", trg)):
        for char, what in (("\t", "a tab"), ("\n", "a newline"), ("\r", "a carriage return")):
            if char in text:
                raise ValueError(f"pairs[{i}]: the {side} contains {what}, which TSV cannot hold "
                                 "(write a .jsonl file instead)")
    line = f"{src}\t{trg}"
    if not line.strip():  # it would be read back as a blank line and skipped
        raise ValueError(f"pairs[{i}]: source and target are only whitespace, which TSV reads as a "
                         "blank line (write a .jsonl file instead)")
    return line + "\n"


def write_pairs(path, pairs) -> None:
    """Write ``pairs`` (a Pairs, or a list of (source, target) string pairs) to ``path``
    atomically, as JSONL when it ends with ``.jsonl`` and TSV otherwise; parent folders are
    created. Whatever is written, ``read_pairs(path)`` reads back the same pairs: a TSV field
    with a tab, ``\\n`` or ``\\r`` (or a line of only whitespace) is a ValueError naming the pair.
    """
    if isinstance(pairs, (str, os.PathLike)):
        raise TypeError(f"pairs: expected Pairs or a list of (source, target) pairs, got the path {pairs!r}")
    # a Pairs built by hand is checked like a list (read_pairs returns a Pairs as is)
    pairs = read_pairs(list(pairs) if isinstance(pairs, Pairs) else pairs, name="pairs")
    path = os.fspath(path)
    if _is_jsonl(path):
        # ensure_ascii=False keeps the file readable; json still escapes \n and \r, so every
        # object stays on its one line.
        lines = [json.dumps({"src": s, "trg": t}, ensure_ascii=False) + "\n" for s, t in pairs]
    else:
        lines = [_tsv_line(i, s, t) for i, (s, t) in enumerate(pairs)]
    atomic_write_bytes(path, "".join(lines).encode("utf-8"))
