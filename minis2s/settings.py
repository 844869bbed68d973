"""Settings declared once: a dataclass field carries its default, its help and its check.

Every group of settings (``TrainConfig``, ``ModelConfig``, ``DataConfig``) is a dataclass whose
fields are made with ``setting(...)``. From those fields alone come:

* the checks (``check_settings``, called by each dataclass's ``__post_init__``): the type from
  the annotation (``int``, ``float``, ``str``, ``bool``, optionally ``| None``), ``choices`` and
  the bounds ``low``/``high``;
* the command-line flags (``add_arguments``): ``--batch-size`` for ``batch_size``, the default
  and the choices shown in ``--help``; ``settings_from_args`` reads them back;
* the resume whitelist (``resumable``): the fields marked ``resume=True`` may be changed when a
  run is resumed (``--set KEY=VALUE``, parsed by ``parse_assignment``).

So a default cannot drift between the library, the CLI and the docs: there is one place to read.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import MISSING, field, fields

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def setting(default, help: str, *, choices=None, low=None, high=None, low_open: bool = False,
            resume: bool = False):
    """A dataclass field with its documentation and its check.

    ``low``/``high``: inclusive bounds (``low_open=True``: ``low`` itself is refused).
    ``resume``: a resumed run may change it (its batches and data do not depend on it)."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "low": low, "high": high,
            "low_open": low_open, "resume": resume}
    return field(default=default, metadata=meta)


def _kind(f) -> tuple[type, bool]:
    """('int | None') -> (int, True): the base type and whether None is allowed."""
    parts = [p.strip() for p in str(f.type).split("|")]
    optional = "None" in parts
    base = [p for p in parts if p != "None"]
    if len(base) != 1 or base[0] not in _TYPES:
        raise TypeError(f"setting {f.name!r}: unsupported annotation {f.type!r}")
    return _TYPES[base[0]], optional


def check_value(f, value):
    """``value`` checked (and ints widened to float) for the field ``f``; ValueError/TypeError
    naming the setting otherwise."""
    kind, optional = _kind(f)
    meta = f.metadata
    if value is None:
        if optional:
            return None
        raise TypeError(f"{f.name} must be a {kind.__name__}, got None")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{f.name} must be a {kind.__name__}, got {type(value).__name__} {value!r}")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{f.name} must be a finite number, got {value}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"{f.name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("low_open") and value == low)):
        raise ValueError(f"{f.name} must be {'>' if meta.get('low_open') else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{f.name} must be <= {high}, got {value}")
    return value


def check_settings(obj) -> None:
    """Check every field of the settings dataclass ``obj`` in place (call from __post_init__)."""
    for f in fields(obj):
        object.__setattr__(obj, f.name, check_value(f, getattr(obj, f.name)))


def settings_from_dict(cls, d: dict, *, where: str = "settings"):
    """``cls(**d)``, refusing keys that are not its settings (a ValueError naming them)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{where}: unknown {cls.__name__} settings {unknown}")
    return cls(**d)


def resumable(cls) -> tuple[str, ...]:
    """The settings a resumed run may change."""
    return tuple(f.name for f in fields(cls) if f.metadata.get("resume"))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser, cls, *, defaults: dict | None = None, exclude=(), only=None) -> None:
    """One flag per setting of ``cls`` (or of those in ``only``): ``--name`` (bools:
    ``--name``/``--no-name``), with the default (``defaults`` overrides the dataclass's, e.g. a
    preset's) shown in --help: argparse fills ``%(default)s`` with the parser's own default, so
    --help shows the value a command really starts from."""
    defaults = defaults or {}
    for f in fields(cls):
        if f.name in exclude or (only is not None and f.name not in only):
            continue
        kind, _ = _kind(f)
        default = defaults.get(f.name, f.default if f.default is not MISSING else None)
        meta = f.metadata
        help_text = meta.get("help", "").replace("%", "%%") + " (default: %(default)s)"
        if kind is bool:
            parser.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        else:
            parser.add_argument(_flag(f.name), dest=f.name, type=kind, default=default,
                                choices=meta.get("choices"), help=help_text,
                                metavar=None if meta.get("choices") else f.name.upper())


def settings_from_args(cls, args, **overrides):
    """The ``cls`` that the flags of ``add_arguments`` describe (``overrides`` win)."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})


def parse_assignment(cls, item: str, *, allowed=None) -> tuple[str, object]:
    """"epochs=60" -> ("epochs", 60), checked against the field; ``allowed`` limits the keys
    (default: ``resumable(cls)``). Values are JSON (``null``, ``1e-3``, ``true``) or a bare string."""
    allowed = resumable(cls) if allowed is None else tuple(allowed)
    key, sep, text = item.partition("=")
    if not sep or key not in allowed:
        raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(allowed)}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    f = next(f for f in fields(cls) if f.name == key)
    try:
        return key, check_value(f, value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--set {item!r}: {e}") from e
