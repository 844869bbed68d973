"""Weights on disk: the safetensors format, through its reference implementation (the
``safetensors`` package), with minis2s's atomic writes and one-line errors.

Layout: 8 bytes little-endian header length N, then N bytes of JSON
``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``,
then the raw little-endian C-order bytes. PyTorch's ``safetensors.torch.load_file`` reads what
this writes, so weights move to and from ``torch.nn.Module.load_state_dict``.

The reference reader is strict where a home-made one tends not to be: the tensors' byte ranges
must be contiguous, non-overlapping and cover the data exactly, each range must match its
shape and dtype, and shapes are lists of non-negative integers. It memory-maps the file, so
``read_header`` looks at names, shapes and dtypes without reading a byte of data: a caller can
check them against what it expects before anything is allocated (``load_file(expect=...)``).
"""
from __future__ import annotations

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load, save

from minis2s.atomic import atomic_write_bytes

# The dtypes minis2s stores and reads (safetensors' names); others (BF16, F8...) are refused.
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def save_file(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write {name: array} to ``path`` atomically (temp file + rename)."""
    atomic_write_bytes(path, serialize(tensors, metadata))


def serialize(tensors: dict, metadata: dict | None = None) -> bytes:
    """{name: array} -> the bytes of a safetensors file."""
    arrays = {}
    for name, t in tensors.items():
        a = np.asarray(t)
        if a.dtype not in _NAMES:
            raise TypeError(f"tensors[{name!r}] has dtype {a.dtype}, which safetensors cannot store")
        arrays[name] = np.ascontiguousarray(a).reshape(a.shape)  # ascontiguousarray alone makes 0-d 1-d
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata else None
    return save(arrays, metadata=meta)


def read_header(path) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """{name: (dtype, shape)} of a safetensors file, checked by the reference reader, without
    reading the data. ValueError naming the file if it is not a valid safetensors file."""
    try:
        with safe_open(path, framework="np") as f:
            out = {}
            for name in f.keys():  # noqa: SIM118 - a safe_open handle, not a dict
                s = f.get_slice(name)
                dtype = s.get_dtype()
                if dtype not in _DTYPES:
                    raise ValueError(f"tensor {name!r} has dtype {dtype}, which minis2s does not read")
                out[name] = (np.dtype(_DTYPES[dtype]), tuple(s.get_shape()))
            return out
    except SafetensorError as e:
        raise ValueError(f"{path}: not a valid safetensors file ({e})") from e
    except OSError as e:  # the reader's OSErrors carry no errno: a missing file, a directory
        raise ValueError(f"{path}: cannot be read ({e})") from e
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def load_file(path, expect: dict | None = None) -> dict:
    """Read {name: array} (native byte order, writable copies). ``expect`` {name: shape}: the
    tensors the caller needs, checked against the header before any data is read (ValueError
    naming the file and the first difference)."""
    if expect is not None:
        check_header(path, expect)
    header = read_header(path)
    try:
        with safe_open(path, framework="np") as f:
            return {name: np.array(f.get_tensor(name), copy=True) for name in header}
    except SafetensorError as e:  # pragma: no cover - the header was valid a moment ago
        raise ValueError(f"{path}: not a valid safetensors file ({e})") from e


def loads(data: bytes, where) -> dict:
    """``load_file`` of a file already read into memory (``data``; ``where`` names it in errors)."""
    try:
        out = load(data)
    except SafetensorError as e:
        raise ValueError(f"{where}: not a valid safetensors file ({e})") from e
    except KeyError as e:  # the numpy reader's error for a dtype NumPy does not have (BF16, F8...)
        raise ValueError(f"{where}: a tensor has dtype {e.args[0]}, which minis2s does not read") from e
    for name, a in out.items():
        if a.dtype not in _NAMES:
            raise ValueError(f"{where}: tensor {name!r} has dtype {a.dtype}, which minis2s does not read")
    return out


def check_header(path, expect: dict, *, logical=None) -> None:
    """ValueError naming ``path`` unless its tensors (read from the header alone) have exactly
    the shapes ``expect`` {name: shape}; ``logical`` maps the stored {name: shape} to the
    shapes they stand for first (quantize.logical_shapes: scales left out, packed codes)."""
    found = {k: shape for k, (_, shape) in read_header(path).items()}
    check_shapes(logical(found) if logical is not None else found, expect, path)


def check_shapes(found: dict, expect: dict, path) -> None:
    """ValueError naming ``path`` unless {name: shape} ``found`` is exactly ``expect``."""
    missing = sorted(set(expect) - set(found))
    unexpected = sorted(set(found) - set(expect))
    if missing or unexpected:
        raise ValueError(f"{path}: the tensors do not match: missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{' ...' if len(unexpected) > 5 else ''}")
    for name, shape in expect.items():
        if tuple(found[name]) != tuple(shape):
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(found[name])}, expected {tuple(shape)}")
