"""The training loop: one for every task, one method per concern (as joeynmt's TrainManager).

A *task* (minis2s/task.py's ``Seq2SeqTask``, or anything with these) supplies the data and
the judgement:
    task.train_batches(rng, batch_size) -> list of Batch (src, src_lengths, trg)
    task.evaluate(model)    -> dict of dev metrics; ``task.metric`` names the one that picks
                               the best model, ``task.lower_is_better`` its direction
    task.describe()         -> JSON-able description saved in config.json and every model folder
    task.files()            -> {name: bytes} saved beside it (tokenizer models)
    task.data_settings()    -> JSON-able description of the data (sources, sizes, digest)
    task.pad_id             -> target padding id (ignored by the loss)

Per step (``train_step``): forward with teacher forcing -> masked cross-entropy over trg[1:]
(distilling, ``distill_from``: against the references mixed with the teachers' distributions,
minis2s/training/distill.py) -> backward -> clip the global gradient norm -> Adam. Per epoch (``end_epoch``): dev evaluation,
metrics.jsonl and curves.png, RUN/best when dev improves, the schedule and early stopping
(minis2s/training/schedule.py), a checkpoint. At the end (any reason but divergence): RUN/last.

Resuming restores weights, optimiser, the run state (minis2s/training/state.py) and every
random state; batch order is a pure function of (seed, epoch). So a run stopped and resumed
ends with the same weights, bit for bit, as one never stopped. SIGINT and SIGTERM stop the
run at the next step boundary with a checkpoint (``TrainingInterrupted`` says where).

Under ``mpiexec -n N`` (minis2s/training/distributed.py) each rank trains on its share of every
batch and one fused Allreduce per step sums the gradients, the loss and the stop flags; dev
decoding is spread over the ranks (``task.evaluate(model, map_batches=...)``); rank 0 alone
logs and writes the run folder. The run state is global, so a run resumes under any N.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from minis2s.atomic import atomic_save_png
from minis2s.nn import CrossEntropyLoss
from minis2s.optim import Adam, clip_grad_norm_
from minis2s.training.config import TrainConfig
from minis2s.training.distill import TeacherTargets, teacher_folders
from minis2s.training.distributed import SkippedRunFolder, allreduce_gradients, broadcast_parameters, world
from minis2s.training.run_folder import CURVES, RunFolder
from minis2s.training.schedule import end_of_epoch, step_lr, stop_reason
from minis2s.training.state import RunState
from minis2s.training.warm_start import init_from_folder


class TrainingDiverged(RuntimeError):
    """The loss, a gradient or a weight became NaN or infinite; no checkpoint holds it."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run; a checkpoint of the last step was written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def log_to_stderr(message: str) -> None:
    """The default ``log`` of a run."""
    print(message, file=sys.stderr)


def _silent(message: str) -> None:
    """The ``log`` of ranks other than 0."""


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _differences(saved: dict, now: dict) -> list[str]:
    """The keys whose values differ; ``*_file`` keys (where the data was read from, for the
    reader) do not count: the data's digest says whether it is the same data."""
    keys = {k for k in set(saved) | set(now) if not k.endswith("_file")}
    return sorted(k for k in keys if not _same(saved.get(k), now.get(k)))


class Trainer:
    """Trains ``model`` on ``task`` into a run folder. Make one with ``Trainer.new`` (a fresh
    run) or ``Trainer.resume``; then ``run()``. ``log``: a function of one message (default:
    stderr); ``progress``: a tqdm bar per epoch; ``comm``: the processes training together
    (default ``world()``: this one alone under a plain python). ``teachers`` (with
    ``config.distill_from``): the teacher model folders or Translators, or their TeacherTargets
    (default: distill_from's comma-separated folders); built when the loop starts, never saved."""

    def __init__(self, task, model, config: TrainConfig, run: RunFolder, state: RunState, optimizer, *,
                 log=None, progress: bool = False, comm=None, teachers=None):
        self.task, self.model, self.config, self.run_folder = task, model, config, run
        self.state, self.optimizer = state, optimizer
        self.comm = comm or world()
        self.log = log or log_to_stderr
        self.progress = progress
        if not self.comm.is_root:
            self.log, self.progress = _silent, False
        broadcast_parameters(self.comm, list(model.parameters()))  # every rank starts from rank 0's weights
        self.loss_fn = CrossEntropyLoss(ignore_index=task.pad_id, soft_weight=config.distill_weight,
                                        label_smoothing=config.label_smoothing)
        _check_teachers(config, teachers)
        self.teachers = teachers
        self.tf_rng = np.random.default_rng([config.seed, 1])  # teacher-forcing coin flips
        self.dropout_rng = np.random.default_rng([config.seed, 2])  # dropout masks: the model's forward takes it
        if state.tf_rng is not None:
            self.tf_rng.bit_generator.state = state.tf_rng
        if state.dropout_rng is not None:
            self.dropout_rng.bit_generator.state = state.dropout_rng
        self._signal = None
        self._received = None  # several ranks: a signal this rank got, acted on once every rank knows
        self._deadline, self._time_up = None, False

    # ---- making one -----------------------------------------------------------------------
    @staticmethod
    def describe_run(task, config: TrainConfig) -> dict:
        """config.json: every setting that shapes the run."""
        return {"train": config.saved(), "task": task.describe(), "data": task.data_settings()}

    @classmethod
    def new(cls, task, model, config: TrainConfig, run_dir, *, init_folder=None, **kw) -> Trainer:
        """A fresh run in ``run_dir`` (refused if it holds one): config.json, then a checkpoint
        of step 0, so that a run killed before its first step can still be resumed. With
        ``config.init_from`` the model starts from that folder's weights (``init_folder``: the
        folder it names, where a task resolves names; default: init_from itself)."""
        comm = kw.get("comm") or world()
        described = cls.describe_run(task, config)
        if config.init_from is not None:  # before the folder (and the teachers' minutes): a misfit fails first
            described["init"] = init_from_folder(model, task, init_folder or config.init_from)
            if comm.is_root:
                (kw.get("log") or log_to_stderr)(f"starting from the weights of {described['init']['folder']}")
        _check_teachers(config, kw.get("teachers"))
        if config.distill_from is not None and not isinstance(kw.get("teachers"), TeacherTargets):
            log = (kw.get("log") or log_to_stderr) if comm.is_root else _silent  # a bad teacher fails before the folder
            kw["teachers"] = _teacher_targets(task, config, kw.get("teachers"), comm, log)
        run = _own_folder(comm, comm.from_root(lambda: RunFolder.create(run_dir, described)))
        trainer = cls(task, model, config, run, RunState(lr=config.lr), Adam(model.parameters(), lr=config.lr), **kw)
        trainer.save_checkpoint()
        return trainer

    @classmethod
    def resume(cls, task, model, config: TrainConfig, run_dir, *, restart_lr: bool = False, **kw) -> Trainer:
        """Continue the run in ``run_dir`` from its latest checkpoint. ``config`` may differ
        from the saved settings only in the resumable ones (``TrainConfig.resumable()``);
        those differences are recorded in RUN/changes.jsonl. ``restart_lr``: a warm restart —
        the lr goes back to ``config.lr`` and a new schedule cycle starts at this step."""
        comm = kw.get("comm") or world()
        _check_teachers(config, kw.get("teachers"))
        optimizer = Adam(model.parameters(), lr=config.lr)

        def open_and_load():  # rank 0's: the weights reach the others in __init__, the rest from here
            run = RunFolder.open(run_dir, log=kw.get("log") or log_to_stderr)
            saved = run.config
            for part, now in (("task", task.describe()), ("data", task.data_settings())):
                diff = _differences(saved.get(part, {}), now)
                if diff:
                    raise ValueError(f"cannot resume {run.path!r}: its {part} settings differ from the ones given "
                                     f"({', '.join(diff)}); a run is resumed with the data and model it started with")
            in_force = {**TrainConfig().saved(), **run.train_settings()}  # settings newer than the run: defaults
            diff = _differences(in_force, config.saved())
            fixed = [k for k in diff if k not in TrainConfig.resumable()]
            if fixed:
                raise ValueError(f"cannot resume {run.path!r} with other {', '.join(fixed)} than it started with: "
                                 f"only {', '.join(TrainConfig.resumable())} may change")
            _, saved_state = run.load_latest(model, optimizer)
            return run, diff, saved_state, optimizer.state_dict() if comm.size > 1 else None

        run, diff, saved_state, optimizer_state = comm.from_root(open_and_load)
        if not comm.is_root:
            optimizer.load_state_dict(optimizer_state)
        run = _own_folder(comm, run)
        saved_state.pop("optimizer", None)
        state = RunState.from_state_dict(saved_state)
        trainer = cls(task, model, config, run, state, optimizer, **kw)
        trainer.log(f"resumed {run.path} from step {state.step} (epoch {state.epoch + 1}, batch {state.step_in_epoch})")
        changes = {k: getattr(config, k) for k in diff}
        if changes or restart_lr:
            run.record_change({"step": state.step, "epoch": state.epoch, "set": changes, "restart_lr": restart_lr})
            if changes:
                trainer.log("changed: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        if restart_lr:
            state.lr = config.lr
            state.lr_cycle_start = state.step
            state.bad_epochs = state.lr_bad_epochs = 0
            trainer.log(f"learning rate restarted at {config.lr:g} ({config.lr_schedule} schedule from step "
                        f"{state.step})")
        if state.finished and (changes or restart_lr):  # more epochs, a new patience: the run may go on
            last = state.history[-1][f"dev_{task.metric}"] if state.history else None
            state.finished = last is not None and trainer._stop_reason(last) is not None
        return trainer

    # ---- one concern each ---------------------------------------------------------------
    def train_step(self, batch, teacher_forcing: float) -> float:
        """One forward, backward, clip and Adam step; returns the batch's mean loss."""
        model = self.model
        model.zero_grad()
        if self.comm.size == 1:
            loss = loss_and_grad(model, batch, self.loss_fn, teacher_forcing, self.tf_rng, soft=self._soft(batch),
                                 dropout_generator=self.dropout_rng)
        else:
            loss = self._shared_loss_and_grad(batch, teacher_forcing)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss} at step {self.state.step + 1} — stopping; "
                                   f"the latest checkpoint is the last good one (try a lower --lr or --clip)")
        norm = clip_grad_norm_(model.parameters(), self.config.clip)
        if not math.isfinite(norm):  # a finite loss can still overflow its gradient: stop before the step
            model.zero_grad()
            raise TrainingDiverged(f"the gradient norm became {norm} at step {self.state.step + 1} — stopping; "
                                   f"the latest checkpoint is the last good one (try a lower --lr or --clip)")
        self.optimizer.lr = self.state.lr
        self.optimizer.step()
        return loss

    def _shared_loss_and_grad(self, batch, teacher_forcing: float) -> float:
        """Several ranks: this rank's shard of the batch forward and backward, then the step's
        one Allreduce. After it every rank holds the whole batch's gradient and mean loss, and
        knows whether any rank was signalled or passed the time limit."""
        comm, s = self.comm, self.state
        dropout = np.random.default_rng([self.config.seed, 3, comm.rank, s.step])  # each rank its own masks, replayable
        shard = comm.shard(batch)
        loss = 0.0
        if shard.size:
            tokens = int((batch.trg[1:] != self.task.pad_id).sum())  # the whole batch's: its mean's denominator
            loss = loss_and_grad(self.model, shard, self.loss_fn, teacher_forcing, self.tf_rng, tokens=tokens,
                                 soft=self._soft(shard), dropout_generator=dropout)
        else:  # fewer columns than ranks: draw the coins the model would have drawn, to stay in step
            self.tf_rng.random(batch.trg.shape[0] - 1)
        late = self._deadline is not None and time.monotonic() >= self._deadline
        loss, signalled, late = allreduce_gradients(comm, list(self.model.parameters()),
                                                    [loss, float(self._received is not None), float(late)])
        if signalled:
            self._signal = self._received or signal.SIGTERM
        self._time_up = late > 0
        return loss

    def _soft(self, batch):
        """The teachers' (T-1, B, V) rows for ``batch`` (its ``index`` finds them), or None."""
        return None if self.teachers is None else self.teachers.for_batch(batch)

    def evaluate(self) -> dict:
        self.model.eval()
        if self.comm.size == 1:
            metrics = self.task.evaluate(self.model)
        else:
            metrics = self.task.evaluate(self.model, map_batches=self.comm.map_batches)
        self.model.train()
        return metrics

    def _score(self, value: float) -> float:
        """The dev metric as "lower is better"."""
        return value if getattr(self.task, "lower_is_better", True) else -value

    def _stop_reason(self, value: float) -> str | None:
        reached = (lambda v, t: v <= t) if getattr(self.task, "lower_is_better", True) else (lambda v, t: v >= t)
        return stop_reason(self.config, self.state, value, reached)

    def model_meta(self, metrics: dict | None) -> dict:
        s = self.state
        return {**self.task.describe(), "epoch": s.epoch, "step": s.step, "dev": metrics}

    def end_epoch(self, teacher_forcing: float) -> None:
        """Evaluate, record, keep the best, move the schedule, decide whether to stop."""
        s, cfg = self.state, self.config
        metrics = self.evaluate()
        value = metrics[self.task.metric]
        s.epoch += 1
        s.step_in_epoch = 0
        record = {"epoch": s.epoch, "step": s.step, "train_loss": s.epoch_loss_sum / max(s.epoch_pairs, 1),
                  "lr": s.lr, "teacher_forcing": teacher_forcing, "train_seconds": round(s.train_seconds, 1),
                  "pairs_per_s": round(s.pairs_seen / max(s.train_seconds, 1e-9), 1)}
        record.update({f"dev_{k}": v for k, v in metrics.items() if isinstance(v, float)})
        s.history.append(record)
        s.epoch_loss_sum, s.epoch_pairs = 0.0, 0
        self.run_folder.write_metrics(s.history)
        if self.comm.is_root:
            plot_curves(s.history, f"{self.run_folder.path}/{CURVES}")
        self.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        previous = s.best
        for message in end_of_epoch(cfg, s, self._score(value)):
            self.log(message)
        if previous is None or s.best < previous:
            self.run_folder.save_model("best", self.model, self.model_meta(metrics), self.task.files())
        if cfg.keep_epochs:
            self.run_folder.save_model(f"epochs/epoch-{s.epoch:03d}", self.model, self.model_meta(metrics),
                                       self.task.files())
            self.run_folder.prune_epochs(cfg.keep_epochs)
        reason = self._stop_reason(value)
        if reason is not None:
            s.finished, s.stop_reason = True, reason

    def save_checkpoint(self) -> str:
        """A checkpoint of the current step — refused (TrainingDiverged) if any weight or
        optimiser moment is not finite, so the latest checkpoint is always a good one."""
        self._check_finite()
        s = self.state
        s.tf_rng = self.tf_rng.bit_generator.state
        s.dropout_rng = self.dropout_rng.bit_generator.state
        return self.run_folder.save_checkpoint(self.model, self.optimizer, s.state_dict(),
                                               keep=self.config.keep_checkpoints)

    def _check_finite(self) -> None:
        arrays = [("weight " + n, p.data) for n, p in self.model.named_parameters()]
        for i, st in enumerate(self.optimizer.state):  # the live buffers: state_dict() would copy them
            arrays += [(f"optimiser state {i}.{k}", v) for k, v in st.items() if hasattr(v, "shape")]
        for name, a in arrays:
            if not bool(self.model.xp.isfinite(a).all()):
                raise TrainingDiverged(f"{name} is not finite at step {self.state.step} — stopping without a "
                                       "checkpoint; the latest checkpoint is the last good one (try a lower --lr)")

    def save_last(self) -> str:
        """RUN/last: the model of the final step, described like RUN/best (``dev``: the metrics
        of the last evaluated epoch, ``dev_epoch``, which may be before this step)."""
        history = self.state.history
        dev = {k[4:]: v for k, v in history[-1].items() if k.startswith("dev_")} if history else None
        return self.run_folder.save_model("last", self.model, {**self.model_meta(dev), "dev_epoch": len(history)},
                                          self.task.files())

    # ---- the loop -----------------------------------------------------------------------
    def run(self) -> RunState:
        """Train until the run ends (epochs, early stopping, target) or a limit of this
        invocation (max_steps, time_limit) or a signal stops it. Returns the run state."""
        s, cfg = self.state, self.config
        if s.finished:
            self.log(f"the run has ended ({s.stop_reason}): nothing to do")
            if self.run_folder.model_step("last") != s.step:  # its last save was cut short
                self.save_last()
            return s
        if cfg.max_steps is not None and s.step >= cfg.max_steps and not self._eval_pending():
            self.log(f"the run is at step {s.step}, max_steps is {cfg.max_steps}: nothing to do")
            return s
        with self._signals():
            self._loop()
        return s

    def _loop(self) -> None:
        s, cfg = self.state, self.config
        if cfg.distill_from is not None and not isinstance(self.teachers, TeacherTargets):  # a resumed run: recompute
            self.teachers = _teacher_targets(self.task, cfg, self.teachers, self.comm, self.log)
        self._deadline = None if cfg.time_limit is None else time.monotonic() + 60.0 * cfg.time_limit
        self.model.train()
        while not s.finished:
            batches = self._epoch_batches()
            tf = cfg.teacher_forcing_at(s.epoch)
            bar = _progress(self.progress, total=len(batches), initial=s.step_in_epoch,
                            desc=f"epoch {s.epoch + 1}/{cfg.epochs}")
            t0, pairs0, ema = time.perf_counter(), 0, None
            try:
                for i in range(s.step_in_epoch, len(batches)):
                    limit = self._limit_reached()  # before the step: an epoch's last step is evaluated
                    if limit:
                        s.train_seconds += time.perf_counter() - t0
                        self._stop(limit)
                        return
                    batch = batches[i]
                    s.lr = step_lr(cfg, s, len(batches))
                    loss = self.train_step(batch, tf)
                    s.step += 1
                    s.step_in_epoch = i + 1
                    s.pairs_seen += batch.size
                    s.epoch_loss_sum += loss * batch.size
                    s.epoch_pairs += batch.size
                    pairs0 += batch.size
                    ema = loss if ema is None else 0.95 * ema + 0.05 * loss
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{ema:.3f}", pairs_s=f"{pairs0 / (time.perf_counter() - t0):.0f}",
                                        lr=f"{s.lr:.1e}")
                    if self._signal is not None or s.step % cfg.checkpoint_every == 0:
                        s.train_seconds += time.perf_counter() - t0
                        t0, pairs0 = time.perf_counter(), 0
                        folder = self.save_checkpoint()
                    if self._signal is not None:
                        self._interrupted(folder)
            finally:
                if bar is not None:
                    bar.close()
            s.train_seconds += time.perf_counter() - t0
            self.save_checkpoint()  # the epoch's steps are kept even if its evaluation fails
            self.end_epoch(tf)
            folder = self.save_checkpoint()
            if self._signal is not None and not s.finished:
                self._interrupted(folder)
            if s.finished:
                self.log(f"the run has ended: {s.stop_reason}")
                self.save_last()

    def _stop(self, limit: str) -> None:
        """A limit of this invocation: the checkpoint of this step (unless the epoch's end just
        wrote it) and RUN/last."""
        index = self.run_folder.index()
        if index and index[-1]["step"] == self.state.step:
            folder = os.path.join(self.run_folder.checkpoints, index[-1]["dir"])
        else:
            folder = self.save_checkpoint()
        self.save_last()
        self.log(f"stopped at step {self.state.step}: {limit}; checkpoint {folder}, model {self.run_folder.path}/last")

    def _epoch_batches(self) -> list:
        """The current epoch's batches: a pure function of (seed, epoch), so never saved."""
        rng = np.random.default_rng([self.config.seed, 2, self.state.epoch])
        return self.task.train_batches(rng, self.config.batch_size)

    def _eval_pending(self) -> bool:
        """The current epoch's batches are all done but it was not evaluated yet (a run stopped
        there by an older rule, or by a signal)."""
        s = self.state
        if s.step_in_epoch == 0:
            return False
        return s.step_in_epoch >= len(self._epoch_batches())

    def _interrupted(self, folder: str):
        self.save_last()
        name = signal.Signals(self._signal).name
        raise TrainingInterrupted(f"interrupted by {name} at step {self.state.step}: checkpoint written to {folder}; "
                                  "--resume (resume=True) continues the run", self._signal)

    def _limit_reached(self) -> str | None:
        if self.config.max_steps is not None and self.state.step >= self.config.max_steps:
            return f"max_steps {self.config.max_steps} reached"
        if self.comm.size > 1:
            late = self._time_up  # as of the last step's Allreduce: every rank stops at the same step
        else:
            late = self._deadline is not None and time.monotonic() >= self._deadline
        if late:
            return f"the time limit of {self.config.time_limit:g} minutes reached"
        return None

    def _signals(self):
        """SIGINT/SIGTERM set a flag that the loop reads at the next step boundary; a second
        signal acts at once (the default handlers are back after the first)."""
        trainer = self

        class _Scope:
            def __enter__(self):
                self.old = {}
                if threading.current_thread() is not threading.main_thread():
                    return self
                for sig in (signal.SIGINT, signal.SIGTERM):
                    self.old[sig] = signal.signal(sig, self.handler)
                return self

            def handler(self, signum, frame):
                if trainer.comm.size == 1:
                    trainer._signal = signum
                else:  # acted on once the next step's Allreduce has told every rank
                    trainer._received = signum
                trainer.log(f"{signal.Signals(signum).name}: stopping after this step (a checkpoint will be written)")
                for sig, old in self.old.items():
                    signal.signal(sig, old)

            def __exit__(self, *exc):
                for sig, old in self.old.items():
                    signal.signal(sig, old)
                return False

        return _Scope()


def loss_and_grad(model, batch, loss_fn, teacher_forcing: float, generator, *, tokens: int | None = None,
                  soft=None, dropout_generator=None) -> float:
    """One teacher-forced forward and its backward: returns the loss (the mean cross-entropy
    over trg[1:]'s non-pad tokens; with ``soft`` (T-1, B, V), against those rows mixed in by
    ``loss_fn.soft_weight``); gradients accumulate in the model. A non-finite loss is
    returned without a backward (the tapes are cleared). ``tokens``: the batch is a shard of
    one with this many scored tokens, whose mean it contributes its share of: loss and
    gradients are scaled by (this shard's tokens) / tokens, so the shards' sum is the mean."""
    out = model(batch.src, batch.trg, teacher_forcing, src_lengths=batch.src_lengths, generator=generator,
                dropout_generator=dropout_generator, trg_lengths=batch.trg_lengths)  # finished rows skipped
    T, B, V = out.shape
    soft = None if soft is None else model.xp.asarray(soft).reshape(-1, V)  # ((T-1)·B, V), on the model's device
    loss = loss_fn(out[1:].reshape(-1, V), batch.trg[1:].reshape(-1), soft)  # outputs[0] is never scored
    share = 1.0
    if tokens is not None:
        share = int((batch.trg[1:] != loss_fn.ignore_index).sum()) / tokens
        loss *= share
    if not math.isfinite(loss):
        model.clear_tape()
        loss_fn.clear_tape()
        return loss
    dout = model.xp.zeros_like(out)  # (T, B, V)
    dout[1:] = (loss_fn.backward() if tokens is None else loss_fn.backward(share)).reshape(T - 1, B, V)
    model.backward(dout)
    return loss


def train(task, model, config: TrainConfig, run_dir, *, resume: bool = False, restart_lr: bool = False,
          log=None, progress: bool = False, comm=None, teachers=None, init_folder=None) -> RunState:
    """Train ``model`` on ``task`` into the run folder ``run_dir``: a new run (refused if the
    folder holds one), or with ``resume=True`` the run there continued (see ``Trainer``).
    ``comm``: the processes training together (default: ``world()``, see distributed.py);
    ``teachers``: with ``config.distill_from``, the teacher model folders or Translators;
    ``init_folder``: with ``config.init_from``, the model folder it names (default: itself)."""
    if init_folder is not None and config.init_from is None:
        raise ValueError("init_folder was given but init_from is None: set init_from to start from a model")
    if restart_lr and not resume:
        raise ValueError("restart_lr=True restarts the learning rate of a resumed run: it needs resume=True")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if resume:
        trainer = Trainer.resume(task, model, config, run_dir, restart_lr=restart_lr, log=log, progress=progress,
                                 comm=comm, teachers=teachers)
    else:
        trainer = Trainer.new(task, model, config, run_dir, log=log, progress=progress, comm=comm, teachers=teachers,
                              init_folder=init_folder)
    return trainer.run()


def _check_teachers(config: TrainConfig, teachers) -> None:
    if teachers is not None and config.distill_from is None:
        raise ValueError("teachers were given but distill_from is None: set distill_from to distil from them")


def _teacher_targets(task, config: TrainConfig, teachers, comm, log) -> TeacherTargets:
    """The teachers' targets for ``task`` (``teachers`` None: distill_from's folders); several
    ranks share the teacher forwards."""
    targets = TeacherTargets(teacher_folders(config.distill_from) if teachers is None else teachers, task, log=log,
                             map_batches=comm.map_batches if comm.size > 1 else None,
                             temperature=config.distill_temperature)
    log(f"distillation: targets (1 - {config.distill_weight:g})·reference + {config.distill_weight:g}·teachers"
        + (f" at temperature {config.distill_temperature:g}" if config.distill_temperature != 1 else ""))
    return targets


def _own_folder(comm, run: RunFolder) -> RunFolder:
    """Rank 0 keeps the run folder; the others hold one that skips every file."""
    return run if comm.is_root else SkippedRunFolder(run.path, run.config)


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
        ax[1].plot(epochs, [h[key] for h in history], "o-", label=key)
    ax[1].set(xlabel="epoch", title="dev metrics (greedy)")
    ax[1].legend()
    fig.tight_layout()
    atomic_save_png(fig, path, dpi=90)


def _progress(enabled, **kw):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(unit="batch", dynamic_ncols=True, **kw)


