"""The training loop: one loop for every task (the reverse demo, G2P, ...).

A *task* supplies the data and the judgement:
    task.train_batches(rng, batch_size) -> list of Batch (src, src_lengths, trg)
    task.evaluate(model)                -> dict of dev metrics, lower ``task.metric`` is better
    task.describe()                     -> JSON-able description saved beside the weights
    task.pad_id                         -> target padding id (ignored by the loss)

Per step: forward with teacher forcing -> masked cross-entropy over trg[1:] -> backward ->
clip the global gradient norm -> Adam. Per epoch: dev evaluation, metrics.jsonl, a PNG of the
curves, the best model saved to RUN/best, early stopping.

Learning rate (``lr_schedule``): "plateau" halves it when dev stops improving (by at least
``lr_threshold``, relative); "cosine" moves it every step from ``lr`` down to ``min_lr`` along
half a cosine, reaching ``min_lr`` at the last step of the last epoch — a run that must end by a
deadline ends annealed. ``restart_lr=True`` on resume begins a new cycle at ``lr`` from the
current step (a warm restart, Loshchilov & Hutter 2017), e.g. after a plateau schedule decayed
too early: the cycle's start is saved, so a resumed cycle continues where it was.

Resuming (``resume=True``) restores weights, optimiser, step counters and every random state
(teacher-forcing coins, dropout masks); batch order is a pure function of (seed, epoch). So a
run stopped and resumed ends with the same weights, bit for bit, as one never stopped.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from minis2s import random as mrandom
from minis2s.atomic import atomic_save_png, atomic_write_bytes, atomic_write_json
from minis2s.checkpoint import load_checkpoint, rng_state_to_json, save_checkpoint, save_model_dir
from minis2s.nn import CrossEntropyLoss
from minis2s.optim import Adam, clip_grad_norm_


class TrainingDiverged(RuntimeError):
    """The loss (or its gradient) became NaN or infinite; the last good checkpoint is left untouched."""


LR_SCHEDULES = ("plateau", "cosine")


def cosine_lr(lr: float, min_lr: float, step: int, start: int, end: int) -> float:
    """The learning rate at ``step`` of a cycle over steps [start, end): half a cosine from
    ``lr`` (at start) to ``min_lr`` (at end - 1, the cycle's last step)."""
    p = min(max(step - start, 0) / max(end - 1 - start, 1), 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    clip: float = 5.0  # max global gradient norm
    teacher_forcing: float = 1.0  # ratio at the first epoch ...
    teacher_forcing_end: float | None = None  # ... moving linearly to this at the last (None: constant)
    patience: int = 4  # early stopping: epochs without a dev improvement
    lr_patience: int = 1  # epochs without improvement before the learning rate is reduced
    lr_factor: float = 0.5
    lr_threshold: float = 0.0  # relative dev improvement below which the lr counts as stalled
    lr_schedule: str = "plateau"  # or "cosine": lr -> min_lr by the last step (see the docstring)
    min_lr: float = 1e-5
    seed: int = 0
    checkpoint_every: int = 200  # steps
    keep_epochs: int = 0  # keep the model of each of the last N epochs in RUN/epochs/ (for averaging)
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in all
    target: float | None = None  # stop once the dev metric is <= this
    progress: bool = True

    def __post_init__(self):
        for f, least in (("epochs", 1), ("batch_size", 1), ("checkpoint_every", 1), ("patience", 1),
                         ("lr_patience", 1), ("keep_epochs", 0)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"{f} must be a {'positive' if least else 'non-negative'} int, got {v!r}")
        for f in ("lr", "clip", "min_lr"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
                raise ValueError(f"{f} must be a positive number, got {v!r}")
        for f in ("teacher_forcing", "teacher_forcing_end"):
            v = getattr(self, f)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"{f} must be in [0, 1], got {v!r}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"lr_factor must be in (0, 1), got {self.lr_factor}")
        if not 0 <= self.lr_threshold < 1:
            raise ValueError(f"lr_threshold must be in [0, 1), got {self.lr_threshold}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def teacher_forcing_at(self, epoch: int) -> float:
        if self.teacher_forcing_end is None or self.epochs == 1:
            return self.teacher_forcing
        a = epoch / (self.epochs - 1)
        return (1 - a) * self.teacher_forcing + a * self.teacher_forcing_end


def loss_and_grad(model, batch, loss_fn, teacher_forcing, generator):
    """One forward and backward: returns the loss; gradients accumulate in the model."""
    out = model(batch.src, batch.trg, teacher_forcing, src_lengths=batch.src_lengths, generator=generator)
    T, B, V = out.shape
    loss = loss_fn(out[1:].reshape(-1, V), batch.trg[1:].reshape(-1))  # outputs[0] is never scored
    if not math.isfinite(loss):
        model.clear_tape()
        loss_fn.clear_tape()
        raise TrainingDiverged(
            f"the training loss became {loss} — stopping; the last good checkpoint is unchanged "
            "(try a lower --lr or a smaller --clip)"
        )
    dout = model.xp.zeros_like(out)  # (T, B, V)
    dout[1:] = loss_fn.backward().reshape(T - 1, B, V)
    model.backward(dout)
    return loss


def plot_curves(history, path) -> None:
    """Training loss and dev metrics per epoch, as a PNG (written atomically)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plotting is a nicety, never a failure
        return
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(epochs, [h["train_loss"] for h in history], "o-")
    ax[0].set(xlabel="epoch", ylabel="train loss (cross-entropy)", title="training loss")
    for key in sorted({k for h in history for k in h if k.startswith("dev_")}):
        ax[1].plot(epochs, [100 * h[key] for h in history], "o-", label=key)
    ax[1].set(xlabel="epoch", ylabel="%", title="dev metrics (greedy)")
    ax[1].legend()
    fig.tight_layout()
    atomic_save_png(fig, path, dpi=90)


def train(task, model, config: TrainConfig, run_dir, *, resume: bool = False, restart_lr: bool = False,
          log=None) -> dict:
    """Train ``model`` on ``task``; everything lands in ``run_dir``. Returns the final state.

    ``restart_lr`` (with ``resume``): set the learning rate back to ``config.lr`` and start a new
    schedule cycle at the current step (see the module docstring)."""
    if restart_lr and not resume:
        raise ValueError("restart_lr=True restarts the learning rate of a resumed run: it needs resume=True")
    log = log or (lambda msg: print(msg, file=sys.stderr))
    os.makedirs(run_dir, exist_ok=True)
    loss_fn = CrossEntropyLoss(ignore_index=task.pad_id)
    optimizer = Adam(model.parameters(), lr=config.lr)
    tf_rng = np.random.default_rng([config.seed, 1])  # teacher-forcing coin flips
    if resume:
        state = load_checkpoint(run_dir, model, optimizer)
        tf_rng.bit_generator.state = state["tf_rng"]
        mrandom.set_rng_state(state["dropout_rng"])
        log(f"resumed from step {state['global_step']} (epoch {state['epoch']}, batch {state['step_in_epoch']})")
        if restart_lr:
            optimizer.lr = config.lr
            state["lr_cycle_start"] = state["global_step"]
            state["bad_epochs"] = state["lr_bad_epochs"] = 0
            log(f"learning rate restarted at {config.lr:g} ({config.lr_schedule} schedule from step "
                f"{state['global_step']})")
    else:
        state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best": None, "bad_epochs": 0,
                 "lr_bad_epochs": 0, "history": [], "train_seconds": 0.0, "words": 0, "lr_cycle_start": 0}
        atomic_write_json(os.path.join(run_dir, "config.json"),
                          {"train": asdict(config), "task": task.describe()})

    def checkpoint():
        state["tf_rng"] = rng_state_to_json(tf_rng.bit_generator.state)
        state["dropout_rng"] = rng_state_to_json(mrandom.get_rng_state())
        # The checkpoint carries its own description (training config, model config and
        # vocabularies), so it stands on its own even without the run folder's config.json.
        state["config"] = {"train": asdict(config), "task": task.describe()}
        save_checkpoint(run_dir, model, optimizer, state)

    while state["epoch"] < config.epochs:
        epoch = state["epoch"]
        batches = task.train_batches(np.random.default_rng([config.seed, 2, epoch]), config.batch_size)
        tf = config.teacher_forcing_at(epoch)
        model.train()
        start = state["step_in_epoch"]
        bar = _progress(config.progress, total=len(batches), initial=start, desc=f"epoch {epoch + 1}/{config.epochs}")
        ema, t0, words0 = None, time.perf_counter(), 0
        epoch_loss, epoch_n = state.get("epoch_loss", 0.0), state.get("epoch_n", 0)
        cycle_end = state["global_step"] - start + (config.epochs - epoch) * len(batches)  # the last epoch's end
        for i in range(start, len(batches)):
            batch = batches[i]
            if config.lr_schedule == "cosine":
                optimizer.lr = cosine_lr(config.lr, config.min_lr, state["global_step"],
                                         state.get("lr_cycle_start", 0), cycle_end)
            model.zero_grad()
            loss = loss_and_grad(model, batch, loss_fn, tf, tf_rng)
            norm = clip_grad_norm_(model.parameters(), config.clip)
            if not math.isfinite(norm):  # a finite loss can still overflow its gradient: stop
                model.zero_grad()  # before the step, so no NaN weight reaches a checkpoint
                raise TrainingDiverged(
                    f"the gradient norm became {norm} at step {state['global_step'] + 1} — stopping; "
                    "the last good checkpoint is unchanged (try a lower --lr or a smaller --clip)"
                )
            optimizer.step()
            state["global_step"] += 1
            state["step_in_epoch"] = i + 1
            state["words"] += batch.size
            words0 += batch.size
            epoch_loss += loss * batch.size
            epoch_n += batch.size
            state["epoch_loss"], state["epoch_n"] = epoch_loss, epoch_n
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.3f}", words_s=f"{words0 / (time.perf_counter() - t0):.0f}",
                                lr=f"{optimizer.lr:.1e}")
            done = config.max_steps is not None and state["global_step"] >= config.max_steps
            if state["global_step"] % config.checkpoint_every == 0 or done:
                state["train_seconds"] += time.perf_counter() - t0
                t0, words0 = time.perf_counter(), 0
                checkpoint()
            if done:
                if bar is not None:
                    bar.close()
                return state
        if bar is not None:
            bar.close()
        state["train_seconds"] += time.perf_counter() - t0
        # ---- end of epoch: evaluate, log, keep the best, schedule --------------------------
        model.eval()
        metrics = task.evaluate(model)
        record = {"epoch": epoch + 1, "step": state["global_step"], "train_loss": epoch_loss / max(epoch_n, 1),
                  "lr": optimizer.lr, "teacher_forcing": tf, "train_seconds": round(state["train_seconds"], 1),
                  "words_per_s": round(state["words"] / max(state["train_seconds"], 1e-9), 1)}
        record.update({f"dev_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        state["history"].append(record)
        atomic_write_bytes(os.path.join(run_dir, "metrics.jsonl"),
                           "".join(_json_line(h) for h in state["history"]).encode())
        plot_curves(state["history"], os.path.join(run_dir, "curves.png"))
        value = metrics[task.metric]
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        # Any improvement keeps the model and resets early stopping; the learning rate is kept
        # only by an improvement of at least ``lr_threshold`` (relative), as in torch's
        # ReduceLROnPlateau(threshold_mode="rel"): creeping gains mean a smaller step is due.
        previous = state["best"]
        if previous is None or value < previous:
            state["best"], state["bad_epochs"] = value, 0
            save_model_dir(os.path.join(run_dir, "best"), model,
                           {**task.describe(), "epoch": epoch + 1, "dev": metrics})
        else:
            state["bad_epochs"] += 1
        if config.keep_epochs:
            keep_epoch_model(run_dir, model, {**task.describe(), "epoch": epoch + 1, "dev": metrics},
                             config.keep_epochs)
        if previous is None or value < previous * (1.0 - config.lr_threshold):
            state["lr_bad_epochs"] = 0
        else:
            state["lr_bad_epochs"] += 1
            if (config.lr_schedule == "plateau" and state["lr_bad_epochs"] >= config.lr_patience
                    and optimizer.lr > config.min_lr):
                optimizer.lr = max(optimizer.lr * config.lr_factor, config.min_lr)
                state["lr_bad_epochs"] = 0
                log(f"dev {task.metric} improved by less than {100 * config.lr_threshold:g}%: "
                    f"learning rate -> {optimizer.lr:.2e}")
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        state["epoch_loss"], state["epoch_n"] = 0.0, 0
        if state["bad_epochs"] >= config.patience:
            state["epoch"] = config.epochs
            log(f"early stopping: no dev improvement for {config.patience} epochs")
        elif config.target is not None and value <= config.target:
            state["epoch"] = config.epochs
            log(f"dev {task.metric} {value:.4g} reached the target {config.target}: stopping")
        checkpoint()
    return state


def keep_epoch_model(run_dir, model, meta: dict, keep: int) -> str:
    """Save the model as RUN/epochs/epoch-NNN (a model folder) and delete all but the newest
    ``keep``; ``minis2s g2p average`` averages such folders."""
    folder = os.path.join(run_dir, "epochs")
    path = os.path.join(folder, f"epoch-{meta['epoch']:03d}")
    save_model_dir(path, model, meta)
    for old in sorted(d for d in os.listdir(folder) if d.startswith("epoch-"))[:-keep]:
        shutil.rmtree(os.path.join(folder, old), ignore_errors=True)
    return path


def _json_line(obj) -> str:
    import json

    return json.dumps(obj) + "\n"


def _progress(enabled, **kw):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(unit="batch", dynamic_ncols=True, **kw)
