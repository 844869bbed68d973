"""The safetensors file format, read and written from scratch (no torch, no extra package).

Layout: 8 bytes little-endian header length N, then N bytes of JSON
``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``,
then the raw little-endian C-order bytes. PyTorch's ``safetensors.torch.load_file`` reads what
this writes, so weights move to and from ``torch.nn.Module.load_state_dict``.
"""
from __future__ import annotations

import json
import struct

import numpy as np

from minis2s.atomic import atomic_write_bytes

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def save_file(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write {name: array} to ``path`` atomically (temp file + rename)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        a = np.ascontiguousarray(a).reshape(a.shape)  # ascontiguousarray alone makes a 0-d array 1-d
        if a.dtype not in _NAMES:
            raise TypeError(f"tensors[{name!r}] has dtype {a.dtype}, which safetensors cannot store")
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # align the data to 8 bytes, as the reference writer does
    atomic_write_bytes(path, struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load_file(path) -> dict:
    """Read {name: array}; a ValueError that names the file if it is truncated or malformed."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        if n > len(raw) - 8:
            raise ValueError("header length exceeds the file size")
        header = json.loads(raw[8 : 8 + n])
        if not isinstance(header, dict):
            raise ValueError(f"the header is a JSON {type(header).__name__}, not an object")
        data = memoryview(raw)[8 + n :]
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            if end > len(data) or begin > end:
                raise ValueError(f"tensor {name!r} lies outside the file")
            a = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"])
            out[name] = a.astype(a.dtype.newbyteorder("="))
        return out
    except (struct.error, KeyError, TypeError, json.JSONDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a valid safetensors file ({e})") from e
