"""Checkpoints and model folders: safetensors weights + JSON, never pickle, always atomic.

Model folder (what ``minis2s g2p predict --model DIR`` reads, and what ships in the package):
    DIR/model.safetensors    weights under the seed's parameter names (torch loads them)
    DIR/model.json           {"task", "model": constructor config, "vocab": ..., ...}

Training checkpoint (inside a run folder):
    RUN/checkpoints/step-00001234/{model.safetensors, optimizer.safetensors, state.json}
    RUN/checkpoints/latest.json   {"dir": "step-00001234"}

A checkpoint is written to a temporary folder, renamed into place (atomic), and only then is
``latest.json`` replaced (atomic). A crash at any point leaves the previous checkpoint as the
latest, intact and loadable.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np

from minis2s import safetensors
from minis2s.atomic import atomic_write_json

MODEL_WEIGHTS, MODEL_META = "model.safetensors", "model.json"


class CheckpointError(ValueError):
    """A model folder or checkpoint that is missing, corrupt or does not fit the model."""


def save_model_dir(folder, model, meta: dict) -> None:
    """Weights and their description into ``folder`` (each file written atomically)."""
    os.makedirs(folder, exist_ok=True)
    safetensors.save_file(model.state_dict(), os.path.join(folder, MODEL_WEIGHTS))
    atomic_write_json(os.path.join(folder, MODEL_META), meta)


def export_model_dir(src, dst, *, float16: bool = False) -> dict:
    """Copy a model folder, optionally storing the weights as float16 (half the bytes; they are
    cast back to the model's dtype on load). Returns the meta written."""
    meta, weights = read_model_dir(src)
    if float16:
        weights = {k: v.astype(np.float16) if v.dtype.kind == "f" else v for k, v in weights.items()}
        meta = {**meta, "stored_dtype": "float16"}
    os.makedirs(dst, exist_ok=True)
    safetensors.save_file(weights, os.path.join(dst, MODEL_WEIGHTS))
    atomic_write_json(os.path.join(dst, MODEL_META), meta)
    return meta


def read_model_dir(folder) -> tuple[dict, dict]:
    """(meta, weights) of a model folder, with a CheckpointError naming what is wrong."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise CheckpointError(f"model folder {folder!r} does not exist")
    meta_path, w_path = os.path.join(folder, MODEL_META), os.path.join(folder, MODEL_WEIGHTS)
    for p in (meta_path, w_path):
        if not os.path.isfile(p):
            raise CheckpointError(f"model folder {folder!r} has no {os.path.basename(p)}")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path} is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} holds a JSON {type(meta).__name__}, not an object")
    try:
        weights = safetensors.load_file(w_path)
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    return meta, weights


def load_weights(model, weights: dict, where: str) -> None:
    """load_state_dict with its KeyError/ValueError turned into a CheckpointError."""
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: the weights do not fit the model: {e}") from e


# ---- training checkpoints ----------------------------------------------------------------------
def save_checkpoint(run_dir, model, optimizer, state: dict, keep: int = 2) -> str:
    """Write one checkpoint and make it the latest; keep the newest ``keep``. Returns its path."""
    ck = os.path.join(run_dir, "checkpoints")
    os.makedirs(ck, exist_ok=True)
    name = f"step-{state['global_step']:08d}"
    final = os.path.join(ck, name)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    safetensors.save_file(model.state_dict(), os.path.join(tmp, MODEL_WEIGHTS))
    opt = optimizer.state_dict()
    arrays, scalars = {}, []
    for i, st in enumerate(opt["state"]):
        scalars.append({k: v for k, v in st.items() if not hasattr(v, "shape")})
        arrays.update({f"{i}.{k}": v for k, v in st.items() if hasattr(v, "shape")})
    safetensors.save_file(arrays, os.path.join(tmp, "optimizer.safetensors"))
    atomic_write_json(os.path.join(tmp, "state.json"), {**state, "optimizer": {"lr": opt["lr"], "scalars": scalars}})
    if os.path.exists(final):  # the same step saved again (e.g. end of epoch after a step save)
        shutil.rmtree(final)
    os.rename(tmp, final)
    atomic_write_json(os.path.join(ck, "latest.json"), {"dir": name})
    old = sorted(d for d in os.listdir(ck) if d.startswith("step-") and not d.endswith(".tmp"))
    for d in old[:-keep]:
        shutil.rmtree(os.path.join(ck, d), ignore_errors=True)
    return final


def load_checkpoint(run_dir, model, optimizer) -> dict:
    """Restore model and optimiser from the latest checkpoint; return its training state."""
    ck = os.path.join(run_dir, "checkpoints")
    latest = os.path.join(ck, "latest.json")
    if not os.path.isfile(latest):
        raise CheckpointError(f"{run_dir!r} has no checkpoint to resume from ({latest} missing)")
    with open(latest) as f:
        folder = os.path.join(ck, json.load(f)["dir"])
    weights = safetensors.load_file(os.path.join(folder, MODEL_WEIGHTS))
    load_weights(model, weights, folder)
    with open(os.path.join(folder, "state.json")) as f:
        state = json.load(f)
    arrays = safetensors.load_file(os.path.join(folder, "optimizer.safetensors"))
    opt_state = []
    for i, scalars in enumerate(state["optimizer"]["scalars"]):
        st = dict(scalars)
        st.update({k.split(".", 1)[1]: v for k, v in arrays.items() if k.split(".", 1)[0] == str(i)})
        opt_state.append(st)
    optimizer.load_state_dict({"lr": state["optimizer"]["lr"], "state": opt_state})
    return state


def rng_state_to_json(state: dict) -> dict:
    """numpy bit-generator states hold Python ints (JSON-safe) and sometimes arrays."""
    return json.loads(json.dumps(state, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
