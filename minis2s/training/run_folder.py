"""The run folder: one training run's files, owned by the library, never overwritten.

    RUN/config.json          every setting of the run (training, model, data), written once,
                             before the first step
    RUN/changes.jsonl        what each resume changed (``--set``, a learning-rate restart)
    RUN/checkpoints/index.json   {"checkpoints": [{"step": N, "dir": "step-0000000N"}, ...]}
    RUN/checkpoints/step-*/  model.safetensors, optimizer.safetensors, state.json
    RUN/best/  RUN/last/     model folders (self-describing): the best dev epoch, the last step
    RUN/epochs/epoch-NNN/    the last epochs' models (``keep_epochs``)
    RUN/metrics.jsonl RUN/curves.png

Rules (each one is a test in tests/test_run_folder.py):
* ``RunFolder.create`` refuses a folder that holds a run, or any files at all; only
  ``RunFolder.open`` (resume) continues one. A first checkpoint is written at step 0, so a run
  killed at any moment can be resumed.
* The index lists checkpoints by step number; the latest is the highest step. A checkpoint is
  first written whole, then added to the index (atomically), then the ones beyond
  ``keep_checkpoints`` are deleted: the index never names a missing folder.
* ``open`` repairs what a killed process left: temporary folders of an unfinished save are
  deleted, a folder caught between the two renames of a swap (``atomic_folder``) is put back,
  and checkpoint folders that the index does not list are deleted.
"""
from __future__ import annotations

import json
import os
import shutil

from minis2s import safetensors
from minis2s.atomic import atomic_write_bytes, atomic_write_json
from minis2s.checkpoint import (
    MODEL_WEIGHTS,
    CheckpointError,
    parse_json,
    read_checkpoint,
    read_checkpoint_state,
    read_json,
    save_model_dir,
    write_checkpoint,
)

CONFIG, CHANGES, METRICS, CURVES = "config.json", "changes.jsonl", "metrics.jsonl", "curves.png"
CHECKPOINTS, INDEX = "checkpoints", "index.json"


class RunExistsError(ValueError):
    """A new run was asked for in a folder that already holds one (or other files)."""


class NotARunError(CheckpointError):
    """A run was to be resumed from a folder that holds none."""


def holds_run(path) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), CONFIG))


class RunFolder:
    """Use ``RunFolder.create(path, config)`` for a new run, ``RunFolder.open(path)`` to resume."""

    def __init__(self, path, config: dict):
        self.path = os.path.abspath(os.fspath(path))
        self.config = config
        self.checkpoints = os.path.join(self.path, CHECKPOINTS)

    # ---- creating and opening -------------------------------------------------------------
    @staticmethod
    def check_new(path) -> None:
        """RunExistsError unless ``path`` can take a new run (missing, or an empty folder)."""
        path = os.fspath(path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise RunExistsError(f"run folder {path!r} is a file")
        if holds_run(path):
            raise RunExistsError(f"{path!r} already holds a run: resume it (--resume, resume=True) or choose "
                                 "another folder (--out)")
        if os.path.isdir(path) and os.listdir(path):
            raise RunExistsError(f"{path!r} is not empty and holds no run: choose an empty or new folder (--out)")

    @classmethod
    def create(cls, path, config: dict) -> RunFolder:
        """A new run in ``path`` (made if missing; refused if it holds a run or any file)."""
        cls.check_new(path)
        os.makedirs(path, exist_ok=True)
        run = cls(path, config)
        atomic_write_json(os.path.join(run.path, CONFIG), config)
        return run

    @classmethod
    def open(cls, path, *, log=None) -> RunFolder:
        """The run in ``path``, repaired after a kill (see the module docstring); ``log`` gets
        one message per repair."""
        path = os.fspath(path)
        cfg = os.path.join(path, CONFIG)
        if not os.path.isfile(cfg):
            what = "does not exist" if not os.path.exists(path) else f"holds no run ({CONFIG} missing)"
            raise NotARunError(f"cannot resume: {path!r} {what}; start a new run there without --resume "
                               "(resume=False)")
        config = read_json(cfg)
        if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
            raise CheckpointError(f"{cfg} is damaged (not an object with the run's 'train' settings)")
        run = cls(path, config)
        for message in run.repair():
            if log is not None:
                log(message)
        return run

    def repair(self) -> list[str]:
        """Undo what a killed save left behind; returns what was done (for the log)."""
        done = []
        for parent in (self.path, self.checkpoints, os.path.join(self.path, "epochs")):
            if not os.path.isdir(parent):
                continue
            for name in sorted(os.listdir(parent)):
                full = os.path.join(parent, name)
                if name.startswith(".") and ".new-" in name or name.endswith(".tmp"):
                    _remove(full)  # an unfinished write: the old version is still in place
                    done.append(f"removed the unfinished {full}")
                elif name.startswith(".") and ".old-" in name:
                    original = os.path.join(parent, name[1:].split(".old-")[0])
                    if os.path.exists(original):
                        _remove(full)  # the swap finished; only the deletion of the old copy did not
                    else:  # killed between the two renames: the old folder goes back
                        os.rename(full, original)
                        done.append(f"restored {original} (a save was interrupted)")
        listed = {c["dir"] for c in self.index()}
        if os.path.isdir(self.checkpoints):
            for name in os.listdir(self.checkpoints):
                if name.startswith("step-") and name not in listed:
                    shutil.rmtree(os.path.join(self.checkpoints, name), ignore_errors=True)
                    done.append(f"removed {name} (not in the index)")
        return done

    # ---- checkpoints ----------------------------------------------------------------------
    def index(self) -> list[dict]:
        """The checkpoints, oldest first: [{"step": N, "dir": name}, ...]."""
        path = os.path.join(self.checkpoints, INDEX)
        if not os.path.isfile(path):
            return []
        try:
            entries = read_json(path)["checkpoints"]
            return sorted(entries, key=lambda c: c["step"])
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{path} is damaged ({e!r})") from e

    def save_checkpoint(self, model, optimizer, state: dict, keep: int) -> str:
        """Write the checkpoint of ``state["step"]``, list it, prune to the newest ``keep``."""
        name = f"step-{state['step']:08d}"
        folder = os.path.join(self.checkpoints, name)
        write_checkpoint(folder, model, optimizer, state)
        entries = [c for c in self.index() if c["step"] != state["step"]] + [{"step": state["step"], "dir": name}]
        entries.sort(key=lambda c: c["step"])
        kept, dropped = entries[-keep:], entries[:-keep]
        atomic_write_json(os.path.join(self.checkpoints, INDEX), {"checkpoints": kept})
        for c in dropped:  # only once the index no longer names them
            shutil.rmtree(os.path.join(self.checkpoints, c["dir"]), ignore_errors=True)
        return folder

    def latest(self) -> str | None:
        """The folder of the latest checkpoint (highest step), or None."""
        entries = self.index()
        return os.path.join(self.checkpoints, entries[-1]["dir"]) if entries else None

    def check_latest_shapes(self, expect: dict) -> None:
        """CheckpointError unless the latest checkpoint's weights have exactly the shapes
        ``expect`` {name: shape} (the model config.json describes), read from the weight file's
        header: a damaged config.json is refused before a model of its sizes is allocated."""
        folder = self._latest_or_raise()
        path = os.path.join(folder, MODEL_WEIGHTS)
        try:
            safetensors.check_header(path, expect)
        except ValueError as e:
            raise CheckpointError(f"{e} (the shapes {self.path}/{CONFIG}'s model settings give)") from e

    def latest_state(self) -> dict:
        folder = self._latest_or_raise()
        return read_checkpoint_state(folder)

    def load_latest(self, model, optimizer) -> tuple[str, dict]:
        """Restore the latest checkpoint into model and optimiser: (its folder, its state)."""
        folder = self._latest_or_raise()
        return folder, read_checkpoint(folder, model, optimizer)

    def _latest_or_raise(self) -> str:
        folder = self.latest()
        if folder is None:
            raise CheckpointError(f"{self.path!r} has no checkpoint to resume from")
        return folder

    # ---- models, metrics, changes ---------------------------------------------------------
    def save_model(self, name: str, model, meta: dict, files: dict | None = None) -> str:
        """A model folder RUN/<name> (e.g. "best", "last", "epochs/epoch-003")."""
        folder = os.path.join(self.path, name)
        save_model_dir(folder, model, meta, files)
        return folder

    def model_step(self, name: str) -> int | None:
        """The step that the model folder RUN/<name> was saved at (None: no such folder)."""
        path = os.path.join(self.path, name, "model.json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f).get("step")

    def prune_epochs(self, keep: int) -> None:
        folder = os.path.join(self.path, "epochs")
        names = sorted((d for d in os.listdir(folder) if d.startswith("epoch-")), key=lambda d: int(d[6:]))
        for old in names[:-keep]:
            shutil.rmtree(os.path.join(folder, old), ignore_errors=True)

    def write_metrics(self, history: list[dict]) -> None:
        atomic_write_bytes(os.path.join(self.path, METRICS), "".join(json.dumps(h) + "\n" for h in history).encode())

    def record_change(self, change: dict) -> None:
        """Append one line to RUN/changes.jsonl (rewritten atomically); config.json stays as written."""
        path = os.path.join(self.path, CHANGES)
        old = b""
        if os.path.isfile(path):
            with open(path, "rb") as f:
                old = f.read()
        atomic_write_bytes(path, old + (json.dumps(change) + "\n").encode())

    def train_settings(self) -> dict:
        """The training settings in force: config.json's, with every recorded change applied."""
        settings = dict(self.config["train"])
        for change in self.changes():
            settings.update(change.get("set", {}))
        return settings

    def changes(self) -> list[dict]:
        path = os.path.join(self.path, CHANGES)
        if not os.path.isfile(path):
            return []
        with open(path, "rb") as f:
            lines = f.read().splitlines()
        changes = [parse_json(line, f"{path}, line {i}") for i, line in enumerate(lines, 1) if line.strip()]
        for i, c in enumerate(changes, 1):
            if not isinstance(c, dict) or not isinstance(c.get("set", {}), dict):
                raise CheckpointError(f"{path}: change {i} is not an object with a 'set' object")
        return changes


def _remove(path) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.unlink(path)
