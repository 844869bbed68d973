"""Training: the settings, the run state, the run folder and the loop.

    config.py      TrainConfig: every training setting, declared once
    state.py       RunState: what a run remembers (step, epoch, best, schedule, random states)
    schedule.py    learning-rate schedules and early stopping, as functions of the state
    run_folder.py  RunFolder: config.json, checkpoints and their index, best/ last/, repair
    trainer.py     Trainer: train_step, end_epoch, save_checkpoint, run; ``train(...)``
"""
from minis2s.training.config import LR_SCHEDULES, TrainConfig
from minis2s.training.run_folder import NotARunError, RunExistsError, RunFolder, holds_run
from minis2s.training.schedule import cosine_lr
from minis2s.training.state import RunState
from minis2s.training.trainer import Trainer, TrainingDiverged, TrainingInterrupted, plot_curves, train

__all__ = ["LR_SCHEDULES", "NotARunError", "RunExistsError", "RunFolder", "RunState", "TrainConfig", "Trainer",
           "TrainingDiverged", "TrainingInterrupted", "cosine_lr", "holds_run", "plot_curves", "train"]
