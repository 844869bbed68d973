"""Atomic file writes: write a temp file in the same folder, fsync, then rename over the target.

A crash at any moment leaves either the old file or the new one, never half of either.
``atomic_folder`` does the same for a folder of files that belong together (a model's weights
and its description): they are written into a temporary sibling that is then swapped in whole.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _tag() -> str:
    """Temporary names carry the writer's pid, so a later writer can tell a killed one's
    leftovers (its pid is gone) from a live one's."""
    return f"{os.getpid()}-"


def remove_stale(parent, prefix: str) -> list[str]:
    """Remove the entries of ``parent`` named ``prefix<pid>-...`` whose writer process is gone
    (left by a kill in the middle of a write); returns what was removed."""
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for d in names:
        pid = d[len(prefix):].split("-", 1)[0]
        if d.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            p = os.path.join(parent, d)
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else _unlink(p)
            removed.append(p)
    return removed


def _unlink(path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def atomic_write_bytes(path, data: bytes) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = "." + os.path.basename(path) + "."
    remove_stale(folder, prefix)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix + _tag(), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would have
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a full disk says no file: name the one
            raise OSError(e.errno, e.strerror or str(e), path) from e
        raise


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


@contextlib.contextmanager
def atomic_folder(path):
    """``with atomic_folder(path) as tmp:`` write files into ``tmp``; on leaving the block the
    folder ``tmp`` replaces ``path`` whole, so ``path`` holds all the old files or all the new
    ones, never a mix. An exception inside the block removes ``tmp`` and leaves ``path`` as it was.

    POSIX cannot rename a folder over a non-empty one, so an existing ``path`` is first renamed
    aside (``.NAME.old-XXXX``), the new folder renamed into place, and the old one deleted. Only
    a crash in the instant between those two renames leaves ``path`` missing, with the old folder
    complete under the aside name (``leftover_folders`` finds it, to name it in an error).
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path!r} exists and is not a folder: refusing to replace it")
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    remove_stale(parent, f".{name}.new-")  # a killed writer's half-written folders
    if os.path.isdir(path):  # a killed writer's old copy, once the new folder was in place
        remove_stale(parent, f".{name}.old-")
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.new-{_tag()}")
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give what makedirs would have
        if os.path.isdir(path):
            aside = tempfile.mkdtemp(dir=parent, prefix=f".{name}.old-{_tag()}")
            os.rmdir(aside)  # only its unique name is wanted
            os.rename(path, aside)
            os.rename(tmp, path)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def leftover_folders(path) -> list[str]:
    """The old copies of ``path`` that an interrupted ``atomic_folder`` left beside it."""
    parent, name = os.path.split(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(parent):
        return []
    return sorted(os.path.join(parent, d) for d in os.listdir(parent) if d.startswith(f".{name}.old-"))


def atomic_save_png(fig, path, dpi: int = 100) -> None:
    """Render a matplotlib figure to PNG in memory, close it, and write it atomically."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
