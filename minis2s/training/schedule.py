"""The learning-rate schedules and early stopping: pure functions of the run state.

"plateau": when dev has not improved by at least ``lr_threshold`` (relative, as torch's
ReduceLROnPlateau(threshold_mode="rel")) for ``lr_patience`` epochs, lr *= lr_factor (never
below min_lr). "cosine": every step, half a cosine from ``lr`` at the cycle's start to
``min_lr`` at the last step of the last epoch — a run that must end by a deadline ends annealed.
A warm restart (Loshchilov & Hutter 2017) begins a new cycle at the current step.
"""
from __future__ import annotations

import math

from minis2s.training.config import TrainConfig
from minis2s.training.state import RunState


def cosine_lr(lr: float, min_lr: float, step: int, start: int, end: int) -> float:
    """The learning rate at ``step`` of a cycle over steps [start, end): half a cosine from
    ``lr`` (at start) to ``min_lr`` (at end - 1, the cycle's last step)."""
    p = min(max(step - start, 0) / max(end - 1 - start, 1), 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


def step_lr(config: TrainConfig, state: RunState, steps_per_epoch: int) -> float:
    """The learning rate for the next step (the cosine schedule moves every step; plateau keeps
    ``state.lr``, which ``end_of_epoch`` lowers)."""
    if config.lr_schedule != "cosine":
        return state.lr
    last = state.step - state.step_in_epoch + (config.epochs - state.epoch) * steps_per_epoch
    return cosine_lr(config.lr, config.min_lr, state.step, state.lr_cycle_start, last)


def end_of_epoch(config: TrainConfig, state: RunState, score: float) -> list[str]:
    """Update best / early stopping / the plateau schedule for a dev ``score`` (lower is
    better) at the end of an epoch. Returns the messages to log. Any improvement resets early
    stopping; the plateau lr is kept only by an improvement of at least ``lr_threshold``."""
    messages = []
    previous = state.best
    improved = previous is None or score < previous
    if improved:
        state.best, state.best_step, state.bad_epochs = score, state.step, 0
    else:
        state.bad_epochs += 1
    if previous is None or score < previous - abs(previous) * config.lr_threshold:
        state.lr_bad_epochs = 0
    else:
        state.lr_bad_epochs += 1
        if (config.lr_schedule == "plateau" and state.lr_bad_epochs >= config.lr_patience
                and state.lr > config.min_lr):
            state.lr = max(state.lr * config.lr_factor, config.min_lr)
            state.lr_bad_epochs = 0
            messages.append(f"dev improved by less than {100 * config.lr_threshold:g}%: learning rate -> "
                            f"{state.lr:.2e}")
    return messages


def stop_reason(config: TrainConfig, state: RunState, value: float, reached) -> str | None:
    """Why the run ends after this epoch (None: it goes on). ``value``: the dev metric as the
    task reports it; ``reached(value, target)``: whether it meets ``config.target``."""
    if state.epoch >= config.epochs:
        return f"all {config.epochs} epochs done"
    if state.bad_epochs >= config.patience:
        return f"early stopping: no dev improvement for {config.patience} epochs"
    if config.target is not None and reached(value, config.target):
        return f"the dev metric {value:.4g} reached the target {config.target:g}"
    return None
