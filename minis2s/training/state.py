"""The run state: everything a training run has to remember, in one explicit object.

A checkpoint is this state, the model's weights and the optimiser's moments; nothing else is
needed to continue a run exactly (bit for bit) where it stopped. Batch order is not stored: it
is a pure function of (seed, epoch), and ``step_in_epoch`` says where in it the run is.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np


@dataclass
class RunState:
    """step: optimiser steps taken in all; epoch: epochs finished (0-based index of the current
    one); step_in_epoch: batches of the current epoch done; best: the best dev score so far (in
    the task's own direction, see ``Trainer``) and best_step where it was reached; bad_epochs /
    lr_bad_epochs: epochs without an improvement, for early stopping and the plateau schedule;
    lr and lr_cycle_start: the schedule's position; history: one record per finished epoch;
    pairs_seen, train_seconds: throughput; epoch_loss_sum, epoch_pairs: the running mean of the
    current epoch's loss; tf_rng, dropout_rng: the states of the teacher-forcing coins and of
    the trainer's dropout generator (the masks the model's forward draws); finished: the run
    has ended (epochs done, early stop or target reached), and stop_reason says why."""

    lr: float
    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best: float | None = None
    best_step: int | None = None
    bad_epochs: int = 0
    lr_bad_epochs: int = 0
    lr_cycle_start: int = 0
    history: list = field(default_factory=list)
    pairs_seen: int = 0
    train_seconds: float = 0.0
    epoch_loss_sum: float = 0.0
    epoch_pairs: int = 0
    tf_rng: dict | None = None
    dropout_rng: dict | None = None
    finished: bool = False
    stop_reason: str | None = None

    def state_dict(self) -> dict:
        """JSON-able (random states' arrays become lists)."""
        return json.loads(json.dumps(asdict(self), default=_json_default))

    @classmethod
    def from_state_dict(cls, d: dict) -> RunState:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"run state has unknown keys {unknown}")
        return cls(**d)

    def load_state_dict(self, d: dict) -> None:
        other = self.from_state_dict(d)
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"cannot store {type(o).__name__} in a run state")
