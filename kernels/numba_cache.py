"""Numba's on-disk cache, made to see an edit to any kernel file, not only the one a function is in.

Why: Numba stamps a cached compilation with the hash of the one file that defines the function.
A kernel of lstm_cpu.py that inlines activations_cpu.py's ``tanh_rational`` kept the old tanh
from the cache after activations_cpu.py changed (seen while writing kernel version 4; the tests
then pass or fail on stale machine code, whichever way the edit went). Here every function
defined in this folder or in minis2s/ops/ is stamped with the hash of every ``.py`` file in both
instead, so any edit there recompiles them all once (a few seconds) and nothing stale is loaded.

How: locator classes of our own (Numba's, with ``get_source_stamp`` replaced) go first in
Numba's list; they accept only functions whose file is in those folders, so every other Numba
function of the process is cached exactly as before. ``install()`` runs when minis2s.kernels is
imported, before any kernel module compiles; it is idempotent.
"""
from __future__ import annotations

import functools
import hashlib
import os

from minis2s import ops

# kernels/ and minis2s/ops/: version 3's compiled time loops are ops/recurrent.py's ``time_loops``
# around this folder's kernels, so their cache must follow both folders
FOLDERS = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(ops.__file__)))


def _folder_tuple(folders) -> tuple:
    """A folder or several -> a tuple of absolute paths."""
    return tuple(os.path.abspath(f) for f in ((folders,) if isinstance(folders, str) else folders))


def folder_stamp(folders=FOLDERS) -> str:
    """sha256 over the names and contents of every ``.py`` file in ``folders`` (a path or a tuple)."""
    folders = _folder_tuple(folders)
    files = [os.path.join(d, n) for d in folders for n in sorted(os.listdir(d)) if n.endswith(".py")]
    return _hash_files(tuple((f, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in files))


@functools.lru_cache(maxsize=8)
def _hash_files(stats: tuple) -> str:
    # keyed on every file's mtime and size: a file changed while the process runs is hashed again
    h = hashlib.sha256()
    for path, _, _ in stats:
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


class _FolderStamped:
    """Mixin for a Numba cache locator: the functions of ``folders`` only, each stamped by every
    Python file in them."""

    folders = FOLDERS

    def get_source_stamp(self):
        return folder_stamp(self.folders)

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) not in cls.folders:
            return None
        return super().from_function(py_func, py_file)


def locators(folders=FOLDERS) -> list:
    """Numba's three file-backed locators, each for ``folders``' files only and stamped by them,
    in Numba's own order: a user-provided NUMBA_CACHE_DIR first, then __pycache__ beside the file,
    then the user-wide cache when that is not writable (an installed, read-only package)."""
    from numba.core import caching

    folders = _folder_tuple(folders)
    bases = [getattr(caching, name, None) or getattr(caching, "_" + name)  # Numba < 0.60: _Name
             for name in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")]
    return [type(f"FolderStamped{base.__name__.lstrip('_')}", (_FolderStamped, base), {"folders": folders})
            for base in bases]


_installed: dict = {}  # folders -> their locators, once installed


def install(folders=FOLDERS) -> None:
    """Put ``folders``' locators first in Numba's list (once per process and folders)."""
    key = _folder_tuple(folders)
    if key in _installed:
        return
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # Numba < 0.60: _CacheImpl
    _installed[key] = locators(key)
    impl._locator_classes[:0] = _installed[key]  # the list every cache implementation reads
