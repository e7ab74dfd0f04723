"""The value types a job kind declares (jobspec.kinds.JobKind fields): what it is ranked
by, which epoch a stage keeps, how it splits its data, what the pages show for it. Pure:
the standard library and jobspec.metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

from jobspec.metrics import Goal, Metric, metric


@dataclass(frozen=True)
class RankKey:
    """A stored metric key a run is ranked by; "trial-*/..." stands for any trial's."""

    key: str
    label: str

    @property
    def metric(self) -> Metric:
        return metric(self.key)

    @property
    def pattern(self) -> bool:
        """Whether the key matches many stored keys (one per trial)."""
        return "*" in self.key


@dataclass(frozen=True)
class Keep:
    """Which epoch's model a stage keeps: the best by `monitor` (early stopping restoring
    its best weights), improving by more than `min_delta` as Keras counts it. A stage
    without a Keep keeps its last epoch."""

    stage: str
    monitor: str
    goal: Goal
    min_delta: float = 0.0

    def improves(self, value: float, kept: float | None) -> bool:
        """Whether `value` replaces the kept epoch whose monitor value is `kept`."""
        if kept is None:
            return True
        if self.goal == "min":
            return value + self.min_delta < kept
        return value - self.min_delta > kept


@dataclass(frozen=True)
class SplitPlan:
    """How a job uses its data set's training images: the share held out for validation
    (rounded up, as sklearn's split does), at most `max_train_images` before the split and
    `steps_per_epoch` batches an epoch (None: no cap). The default: nothing held out."""

    validation_fraction: float = 0.0
    max_train_images: int | None = None
    steps_per_epoch: int | None = None

    @property
    def quick(self) -> bool:
        """Whether the job trains on fewer images or batches than its data set gives."""
        return self.max_train_images is not None or self.steps_per_epoch is not None

    def images(self, n_train: int, batch: int) -> tuple[int, int]:
        """(training images an epoch sees, validation images) of a data set's n_train."""
        cap = self.max_train_images
        pool = n_train if cap is None else min(cap, n_train)
        val = math.ceil(self.validation_fraction * pool)
        train = pool - val
        if self.steps_per_epoch is not None:
            train = min(train, self.steps_per_epoch * max(batch, 1))
        return train, val


@dataclass(frozen=True)
class Features:
    """What the other layers show and allow for a kind's runs; all off: a plain run."""

    # Heads an experiment: its runs are the parents other kinds load stages from, and the
    # experiment report is written around one.
    experiment_root: bool = False
    study: bool = False  # an Optuna study: the study page, best params, one study per group
    parallel: bool = False  # may be launched as N parts sharing its work (and study)
    evaluation: bool = False  # a classifier scored on the test set (card, confusion, kept epoch)
    reconstructions: bool = False  # autoencoders: reconstructions, yardsticks, axes per stage
    parent_label: str | None = None  # the new-run form's parent picker (None: no picker)
    no_parent_label: str = "none"  # its empty option
