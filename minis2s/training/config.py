"""The training settings: each declared once, with its default, its help and its check.

The CLI's flags, their ``--help`` text, and the settings a resumed run may change (``--set``)
are all derived from these fields (minis2s/settings.py). Presets (G2P, the demos) override
defaults in one dict each, never by redeclaring a setting.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from minis2s.settings import check_settings, resumable, setting, settings_from_dict

LR_SCHEDULES = ("plateau", "cosine")


@dataclass
class TrainConfig:
    epochs: int = setting(20, "epochs in all (the cosine schedule anneals to its last step)", low=1, resume=True)
    batch_size: int = setting(128, "pairs per batch", low=1)
    lr: float = setting(1e-3, "Adam's learning rate (the cosine cycle's peak)", low=0.0, low_open=True,
                        resume=True)
    clip: float = setting(5.0, "max global gradient norm", low=0.0, low_open=True, resume=True)
    teacher_forcing: float = setting(1.0, "teacher-forcing ratio at the first epoch", low=0.0, high=1.0,
                                     resume=True)
    teacher_forcing_end: float | None = setting(None, "... moving linearly to this by the last epoch "
                                                "(None: constant)", low=0.0, high=1.0, resume=True)
    patience: int = setting(4, "early stopping: epochs without a dev improvement", low=1, resume=True)
    lr_schedule: str = setting("plateau", "plateau: multiply the lr by lr_factor when dev stalls; cosine: "
                               "anneal it to min_lr by the last step", choices=LR_SCHEDULES, resume=True)
    lr_patience: int = setting(1, "(plateau) epochs of too little improvement before the lr drops", low=1,
                               resume=True)
    lr_factor: float = setting(0.5, "(plateau) the lr is multiplied by this when dev stalls", low=0.0,
                               low_open=True, high=0.999999, resume=True)
    lr_threshold: float = setting(0.0, "(plateau) a relative dev improvement below this counts as stalled",
                                  low=0.0, high=0.999999, resume=True)
    min_lr: float = setting(1e-5, "the lr never goes below this", low=0.0, low_open=True, resume=True)
    seed: int = setting(0, "seeds the weights, batch order, dropout and teacher-forcing coins", low=0)
    checkpoint_every: int = setting(200, "steps between checkpoints (and one at every epoch's end)", low=1,
                                    resume=True)
    keep_checkpoints: int = setting(2, "checkpoints kept (the newest, by step)", low=1, resume=True)
    keep_epochs: int = setting(0, "keep the model of each of the last N epochs in RUN/epochs/ (for averaging)",
                               low=0, resume=True)
    target: float | None = setting(None, "stop once the dev metric reaches this (None: never)", resume=True)
    label_smoothing: float = setting(0.0, "ε: each reference token's target is (1-ε)·onehot + ε/V "
                                     "(PyTorch's label smoothing; 0: the plain cross-entropy)", low=0.0,
                                     high=1.0)
    distill_from: str | None = setting(None, "token-level distillation from these teachers: a model folder, "
                                       "several joined by commas (an ensemble: the mean of their "
                                       "distributions), or a shipped model's name under g2p (None: no teacher)",
                                       resume=True)
    distill_weight: float = setting(0.5, "(distill_from) λ: the targets are (1-λ)·reference + λ·the teachers' "
                                    "distribution", low=0.0, high=1.0, resume=True)
    distill_temperature: float = setting(1.0, "(distill_from) T: each teacher's distribution is taken as "
                                         "softmax(logits / T) before the mean (T > 1: softer, more of its mass "
                                         "on the other tokens; 1: as it is)", low=0.0, low_open=True,
                                         resume=True)
    init_from: str | None = setting(None, "start from this model folder's weights instead of random ones "
                                    "(fine-tuning; under g2p also a shipped model's name): the run's architecture, "
                                    "sizes and vocabularies; a new optimiser and schedule (None: random weights)")
    max_steps: int | None = setting(None, "stop after this many steps in all (a checkpoint and RUN/last "
                                    "are written); not saved with the run", low=1)
    time_limit: float | None = setting(None, "stop after this many minutes of this invocation (a checkpoint "
                                       "and RUN/last are written); not saved with the run", low=0.0,
                                       low_open=True)

    def __post_init__(self):
        check_settings(self)
        if self.init_from is not None and not self.init_from.strip():
            raise ValueError("init_from names no model folder (an empty string): give a folder, or None")
        if self.distill_from is not None and not self.distill_from.strip(" ,"):
            raise ValueError(f"distill_from names no teacher ({self.distill_from!r}): give a model folder, or None")

    # Limits of one invocation: given again (or not) each time a run is resumed, never saved.
    INVOCATION = ("max_steps", "time_limit")

    def saved(self) -> dict:
        """The settings that config.json records (all but the invocation's limits)."""
        return {k: v for k, v in asdict(self).items() if k not in self.INVOCATION}

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "train settings") -> TrainConfig:
        return settings_from_dict(cls, d, where=where)

    @classmethod
    def resumable(cls) -> tuple[str, ...]:
        return resumable(cls)

    def teacher_forcing_at(self, epoch: int) -> float:
        """The ratio at ``epoch`` (0-based): constant, or linear from teacher_forcing to _end."""
        if self.teacher_forcing_end is None or self.epochs == 1:
            return self.teacher_forcing
        a = epoch / (self.epochs - 1)
        return (1 - a) * self.teacher_forcing + a * self.teacher_forcing_end
