"""Checkpoints and model folders: safetensors weights + JSON, never pickle, always atomic.

Model folder (what ``minis2s predict --model DIR`` reads, and what ships in the package):
    DIR/model.safetensors    weights under PyTorch's parameter names (torch loads them)
    DIR/model.json           {"task", "model": constructor config, "vocab": ..., "files": [...], ...}
    DIR/<file>               the files model.json lists (e.g. a sentencepiece model per side)

Training checkpoint (one folder; the run folder's index says which is the latest, see
minis2s/training/run_folder.py):
    RUN/checkpoints/step-00001234/{model.safetensors, optimizer.safetensors, state.json}

Every folder is written to a temporary folder and swapped in whole (``atomic_folder``): a
crash leaves the old folder or the new one, never a mix.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from minis2s import quantize, safetensors
from minis2s.atomic import atomic_folder, atomic_write_bytes, atomic_write_json, leftover_folders
from minis2s.quantize import STORED_DTYPES, check_stored_dtype

MODEL_WEIGHTS, MODEL_META = "model.safetensors", "model.json"


class CheckpointError(ValueError):
    """A model folder or checkpoint that is missing, corrupt or does not fit the model."""


def save_model_dir(folder, model, meta: dict, files: dict | None = None) -> None:
    """Weights, their description and ``files`` ({name: bytes}, e.g. tokenizer models) into
    ``folder``, swapped in together (``atomic_folder``): a crash leaves the previous folder or
    the new one, never new weights beside an old description."""
    _write_model_dir(folder, model.state_dict(), meta, files)


def _write_model_dir(folder, tensors: dict, meta: dict, files: dict | None = None) -> None:
    """The stored tensors, the description and the extra files, swapped into ``folder`` together."""
    files = dict(files or {})
    for name in files:
        if not _plain_name(name):
            raise ValueError(f"a model folder's extra file must be a plain new name, got {name!r}")
    meta = {k: v for k, v in meta.items() if k not in ("files", DIGEST)}
    if files:
        meta["files"] = sorted(files)
    weights = safetensors.serialize(tensors)
    meta[DIGEST] = folder_digest(meta, weights, files)
    with atomic_folder(folder) as tmp:
        atomic_write_bytes(os.path.join(tmp, MODEL_WEIGHTS), weights)
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        atomic_write_json(os.path.join(tmp, MODEL_META), meta)


# model.json's "digest": sha256 of the folder's content — the weight file's bytes, each extra
# file's, and model.json itself (canonical JSON, the digest left out). Any change to any of them,
# a single flipped bit included, makes loading fail instead of loading a different model; a
# change that leaves the content as it was (whitespace in model.json) changes nothing. A folder
# without a digest is refused too (else deleting it would let any change through): one edited
# by hand on purpose is vouched for with ``seal_model_dir`` (``minis2s seal DIR``).
DIGEST = "digest"


def folder_digest(meta: dict, weights: bytes, files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    content = {k: v for k, v in meta.items() if k != DIGEST}
    for part in (json.dumps(content, sort_keys=True, separators=(",", ":")).encode(), weights,
                 *(name.encode() + b"\0" + files[name] for name in sorted(files))):
        h.update(len(part).to_bytes(8, "little"))  # lengths make the parts' boundaries unambiguous
        h.update(part)
    return "sha256:" + h.hexdigest()


def check_digest(folder, meta: dict, weights: bytes) -> None:
    """CheckpointError unless the folder's content (``weights``: its weight file's bytes, as
    read) is the one its model.json's digest names."""
    folder = os.fspath(folder)
    if DIGEST not in meta:
        raise CheckpointError(f"model folder {folder!r}: model.json has no digest (damaged, or edited by hand; "
                              f"if you trust its files, seal it: minis2s seal {folder})")
    if folder_digest(meta, weights, read_model_files(folder, meta)) != meta[DIGEST]:
        raise CheckpointError(f"model folder {folder!r}: its files are not those model.json's digest was made of "
                              f"(damaged, or edited by hand; if you trust them, seal it: minis2s seal {folder})")


def seal_model_dir(folder) -> str:
    """Vouch for a model folder's files as they are now (after editing model.json by hand):
    write its digest into model.json; returns it. Its content is checked on the next load."""
    meta = read_model_meta(folder)
    folder = os.fspath(folder)
    meta[DIGEST] = folder_digest(meta, _read_bytes(os.path.join(folder, MODEL_WEIGHTS)), read_model_files(folder, meta))
    atomic_write_json(os.path.join(folder, MODEL_META), meta)
    return meta[DIGEST]


def _read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _plain_name(name: str) -> bool:
    """A name an extra file of a model folder may have: in the folder, not hidden, not its own two."""
    return bool(name) and name not in (MODEL_WEIGHTS, MODEL_META) and os.path.basename(name) == name \
        and not name.startswith(".")


def read_model_files(folder, meta: dict) -> dict[str, bytes]:
    """The extra files a model folder's model.json lists ({name: bytes})."""
    out = {}
    names = meta.get("files", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and _plain_name(n) for n in names):
        raise CheckpointError(f"{os.path.join(os.fspath(folder), MODEL_META)}: 'files' must be a list of file "
                              f"names in the folder, got {names!r:.80}")
    for name in names:
        path = os.path.join(os.fspath(folder), name)
        if not os.path.isfile(path):
            raise CheckpointError(f"model folder {os.fspath(folder)!r} has no {name} (model.json lists it)")
        out[name] = _read_bytes(path)
    return out


def export_model_dir(src, dst, *, stored_dtype: str = "float32") -> dict:
    """Copy a model folder, storing its weights as ``stored_dtype`` (minis2s/quantize.py):
    "float32", "float16" (half the bytes), "int8" (a quarter, one float32 scale per row) or
    "int4" (5/32: a float16 scale per 16 weights of a row; matrices of other row lengths int8);
    ``read_model_dir`` turns them back into floats. Returns the meta written."""
    check_stored_dtype(stored_dtype)
    meta, weights = read_model_dir(src)
    files = read_model_files(src, meta)
    meta = {**meta, "stored_dtype": stored_dtype}
    _write_model_dir(dst, quantize.pack(weights, stored_dtype), meta, files)
    return meta


def average_model_dirs(folders, dst) -> dict:
    """Write to ``dst`` the model whose every weight is the mean of that weight across the model
    folders ``folders`` (same architecture; e.g. the last epochs of a run, RUN/epochs/*) — a
    cheap ensemble in one model's size (checkpoint averaging, as in Vaswani et al. 2017). The
    mean is taken in float64 and stored in the models' own dtype. Returns the meta written: the
    last folder's, with ``averaged_from``."""
    folders = [os.fspath(f) for f in folders]
    if len(folders) < 2:
        raise ValueError(f"averaging needs at least 2 model folders, got {len(folders)}")
    first = folders[0]
    first_meta, weights = read_model_dir(first)
    sums = {k: v.astype(np.float64) for k, v in weights.items()}
    dtypes = {k: v.dtype for k, v in weights.items()}
    for f in folders[1:]:
        meta, weights = read_model_dir(f)
        if meta.get("model") != first_meta.get("model") or set(weights) != set(sums):
            raise CheckpointError(f"{f}: not the same architecture as {first} (cannot average)")
        for k, v in weights.items():
            if v.shape != sums[k].shape:
                raise CheckpointError(f"{f}: {k} has shape {v.shape}, {first} has {sums[k].shape}")
            sums[k] += v
    mean = {k: (v / len(folders)).astype(dtypes[k]) for k, v in sums.items()}
    meta = {k: v for k, v in meta.items() if k not in ("dev", "stored_dtype")}  # the last folder's
    meta["averaged_from"] = [os.path.abspath(f) for f in folders]
    _write_model_dir(dst, mean, meta, read_model_files(folders[-1], meta))
    return meta


def read_model_dir(folder) -> tuple[dict, dict]:
    """(meta, weights) of a model folder, with a CheckpointError naming what is wrong."""
    meta = read_model_meta(folder)
    return meta, read_model_weights(folder, meta)


def read_model_meta(folder) -> dict:
    """A model folder's model.json, after checking the folder holds its two files."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        aside = leftover_folders(folder)
        hint = f" (an interrupted save left the previous one at {aside[-1]!r})" if aside else ""
        raise CheckpointError(f"model folder {folder!r} does not exist{hint}")
    meta_path, w_path = os.path.join(folder, MODEL_META), os.path.join(folder, MODEL_WEIGHTS)
    for p in (meta_path, w_path):
        if not os.path.isfile(p):
            raise CheckpointError(f"model folder {folder!r} has no {os.path.basename(p)}")
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} holds a JSON {type(meta).__name__}, not an object")
    stored = meta.get("stored_dtype", "float32")
    if stored not in STORED_DTYPES:
        raise CheckpointError(f"{meta_path}: stored_dtype must be one of {STORED_DTYPES}, got {stored!r}")
    return meta


def read_model_weights(folder, meta: dict, expect: dict | None = None) -> dict:
    """The weights of a model folder as floats ({name: array}). ``expect`` {name: shape}: the
    model's parameters, checked against the weight file's header before any data is read, so
    that sizes which do not match the weights are refused before anything is allocated."""
    w_path = os.path.join(os.fspath(folder), MODEL_WEIGHTS)
    stored = meta.get("stored_dtype", "float32")
    try:
        if expect is not None:  # the header alone, before any data is read; scales are no parameters
            safetensors.check_header(w_path, expect, logical=quantize.logical_shapes)
        data = _read_bytes(w_path)  # read once: for the digest, then for the tensors
        check_digest(folder, meta, data)
        return quantize.unpack(safetensors.loads(data, w_path), stored)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise CheckpointError(f"{w_path}: {msg}" if str(w_path) not in str(msg) else str(msg)) from e


def read_json(path):
    """A JSON file's value; CheckpointError naming the file if it is not JSON (or nested so
    deeply that the parser gives up)."""
    return parse_json(_read_bytes(path), path)


def parse_json(data: bytes | str, where):
    """``json.loads`` with every way it can fail (not UTF-8, not JSON, nested too deeply) a
    CheckpointError naming ``where`` (a file, or a file and line)."""
    try:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where} is not valid JSON ({e})") from e
    except RecursionError as e:
        raise CheckpointError(f"{where} is not valid JSON (nested too deeply)") from e


def load_weights(model, weights: dict, where: str) -> None:
    """load_state_dict with its KeyError/ValueError turned into a CheckpointError."""
    try:
        model.load_state_dict(weights)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: the weights do not fit the model: {e}") from e


# ---- training checkpoints ----------------------------------------------------------------------
CHECKPOINT_STATE = "state.json"


def write_checkpoint(folder, model, optimizer, state: dict) -> None:
    """One checkpoint folder (swapped in whole): the weights, the optimiser's arrays and a
    JSON of the run state with the optimiser's scalars (``{**state, "optimizer": ...}``)."""
    with atomic_folder(folder) as tmp:  # a step saved again (epoch end after a step save): replaced
        safetensors.save_file(model.state_dict(), os.path.join(tmp, MODEL_WEIGHTS))
        opt = optimizer.state_dict()
        arrays, scalars = {}, []
        for i, st in enumerate(opt["state"]):
            scalars.append({k: v for k, v in st.items() if not hasattr(v, "shape")})
            arrays.update({f"{i}.{k}": v for k, v in st.items() if hasattr(v, "shape")})
        safetensors.save_file(arrays, os.path.join(tmp, "optimizer.safetensors"))
        atomic_write_json(os.path.join(tmp, CHECKPOINT_STATE),
                          {**state, "optimizer": {"lr": opt["lr"], "scalars": scalars}})


def read_checkpoint_state(folder) -> dict:
    """The JSON of a checkpoint folder (run state and optimiser scalars)."""
    path = os.path.join(folder, CHECKPOINT_STATE)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {folder!r} has no {CHECKPOINT_STATE}")
    state = read_json(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a JSON {type(state).__name__}, not an object")
    return state


def read_checkpoint(folder, model, optimizer) -> dict:
    """Restore model and optimiser from a checkpoint folder; return its saved state."""
    state = read_checkpoint_state(folder)
    weights = safetensors.load_file(os.path.join(folder, MODEL_WEIGHTS))
    load_weights(model, weights, folder)
    arrays = safetensors.load_file(os.path.join(folder, "optimizer.safetensors"))
    opt_state = []
    for i, scalars in enumerate(state["optimizer"]["scalars"]):
        st = dict(scalars)
        st.update({k.split(".", 1)[1]: v for k, v in arrays.items() if k.split(".", 1)[0] == str(i)})
        opt_state.append(st)
    try:
        optimizer.load_state_dict({"lr": state["optimizer"]["lr"], "state": opt_state})
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{folder}: the optimiser state does not fit the model: {e}") from e
    return state


def rng_state_to_json(state: dict) -> dict:
    """numpy bit-generator states hold Python ints (JSON-safe) and sometimes arrays."""
    return json.loads(json.dumps(state, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
