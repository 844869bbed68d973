"""A run that starts from a trained model's weights (``init_from``): fine-tuning, or a training
that goes on past the run it came from (a new run folder, its own schedule and optimiser).

The model folder must be the run's model: the same architecture and sizes (every setting that
shapes or reads the weights) and the same vocabularies id for id, since an embedding row or an
output row means its token. Dropout and the stored dtype may differ: they change how the weights
are trained or kept, not what they mean (an int8 export is read back as floats). Only the
weights are taken; the optimiser starts afresh, as Adam does at step 0.
"""
from __future__ import annotations

import os
from dataclasses import asdict

from minis2s.checkpoint import (
    DIGEST,
    CheckpointError,
    load_weights,
    read_model_files,
    read_model_meta,
    read_model_weights,
)
from minis2s.models.config import ModelConfig, parameter_shapes

# Settings that change neither the weights' shapes nor what they mean.
FREE = ("dropout", "dtype")


def init_from_folder(model, task, folder) -> dict:
    """Load ``folder``'s weights into ``model`` (built for ``task``); returns what config.json
    records: the folder and its model.json's digest (its weights, files and settings). Every
    mismatch is a ValueError naming init_from and what differs, before any weight is read."""
    from minis2s.translator import codecs_from_meta  # the codecs a model folder describes

    where = f"init_from {os.fspath(folder)!r}"
    try:
        meta = read_model_meta(folder)
        theirs = ModelConfig.from_dict(meta["model"])
        src, trg = codecs_from_meta(meta, read_model_files(folder, meta))
    except (KeyError, TypeError, ValueError) as e:  # CheckpointError is a ValueError
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise ValueError(f"{where}: not a model folder that can start a run ({msg})") from e
    ours = asdict(task.model_config)
    differ = [f"{k} {v!r} (the run's: {ours[k]!r})" for k, v in asdict(theirs).items()
              if k not in FREE and v != ours[k]]
    if differ:
        raise ValueError(f"{where}: its model differs from the run's in {', '.join(differ)}")
    for side, mine, other in (("source", task.src, src), ("target", task.trg, trg)):
        if other.vocab != mine.vocab or other.tokenizer.to_json() != mine.tokenizer.to_json():
            raise ValueError(f"{where}: its {side} vocabulary or tokenizer is not the run's "
                             f"({len(other.vocab)} tokens against {len(mine.vocab)}): token ids would change meaning")
    try:
        weights = read_model_weights(folder, meta, expect=parameter_shapes(task.model_config, len(task.src),
                                                                           len(task.trg)))
        load_weights(model, weights, os.fspath(folder))
    except CheckpointError as e:
        raise ValueError(f"{where}: {e}") from e
    return {"folder": os.path.abspath(folder), "digest": meta.get(DIGEST)}
