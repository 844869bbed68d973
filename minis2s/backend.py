"""The one place array code gets its array module from.

Every op calls ``xp = array_module(x)`` and writes ``xp.tanh(...)``, ``xp.empty(...)``: NumPy for
NumPy arrays (the default, always available), CuPy for CuPy arrays. CuPy is never imported here
unless an array of its kind is passed in or ``get_backend("cuda")`` asks for it, so minis2s runs
on a machine that has neither CuPy nor a GPU.
"""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_gpu_array(a) -> bool:
    """Whether ``a`` is a CuPy array (told from its type's module: CuPy is not imported)."""
    return type(a).__module__.split(".")[0] == "cupy"


def array_module(*arrays):
    """NumPy, or CuPy if any of ``arrays`` lives on the GPU."""
    for a in arrays:
        if is_gpu_array(a):
            import cupy

            return cupy
    return np


def get_backend(device: str):
    """The array module for a device name: ``"cpu"`` -> numpy, ``"cuda"`` -> cupy.

    Raises a clear error when CuPy or a GPU is missing, instead of failing later inside an op.
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a str such as 'cpu' or 'cuda', got {type(device).__name__}")
    if device == "cpu":
        return np
    if device == "cuda" or device.startswith("cuda:"):
        try:
            import cupy
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise RuntimeError(
                "device='cuda' needs CuPy: pip install 'minis2s[cuda]' (cupy-cuda13x)"
            ) from e
        try:
            n = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # pragma: no cover - depends on the machine
            raise RuntimeError(f"device='cuda': CuPy is installed but finds no GPU ({e})") from e
        if n == 0:  # pragma: no cover
            raise RuntimeError("device='cuda': CuPy is installed but finds no GPU")
        return cupy
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def to_numpy(a):
    """A NumPy copy of an array from either backend."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def check_float_dtype(dtype, name: str = "dtype") -> np.dtype:
    """float32 or float64, else a TypeError naming the argument."""
    try:
        d = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from e
    if d not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {d}")
    return d
