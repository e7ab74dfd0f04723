"""How a job tells the outside world what it is doing, and hears that it should stop.

The core knows nothing of where progress goes: the CLI draws bars, the queue's recorder
writes rows. Both subclass `Reporter` and override what they need. Plain Python only: the
worker's Celery main process imports this (through the recorder) and must not load Keras;
the Keras callback that feeds a Reporter is worker.ml.callbacks.ReporterCallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: the checkpoint module imports Keras
    from worker.ml.checkpoint import Checkpoint


@dataclass(frozen=True)
class Progress:
    """Where a stage stands after a batch."""

    stage: str
    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based, within the epoch
    steps: int
    images_per_sec: float
    eta_seconds: float  # to the end of this stage, at the current rate


@dataclass(frozen=True)
class TrialReport:
    """One finished Optuna trial."""

    number: int
    params: dict
    state: str  # a jobspec.status.TrialState (Optuna's state, by name)
    value: float | None
    intermediate: dict[int, float]
    seconds: float


class Reporter:
    """Receives a job's progress. Every method is a no-op here; override what you need."""

    def stage_started(self, stage: str, *, epochs: int, steps: int, images: int) -> None:
        """A training stage (ae01, ae02, ae03, finetune, trial-N) begins."""

    def batch_ended(self, progress: Progress) -> None:
        """Called after every training batch; throttle expensive work yourself."""

    def epoch_ended(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        """Metrics of one finished epoch (1-based), validation included."""

    def sampled(self, seconds: float, values: dict[str, float]) -> None:
        """A reading of time series (the process's memory, CPU, GPU) `seconds` after the
        job started: a point in time, never an epoch (worker.system_metrics sends them)."""

    def stage_ended(self, stage: str, summary: dict) -> None:
        """A stage is done (or was cancelled); summary is JSON-able."""

    def trial_ended(self, trial: TrialReport) -> None:
        """A tuning trial finished, was pruned, or failed."""

    def should_stop(self) -> bool:
        """Asked between batches: True stops the job, keeping what it has so far."""
        return False

    def should_pause(self) -> bool:
        """Asked right after a checkpoint was handed over (an epoch's end; a tune: a trial's
        end): True stops the job there, to be resumed later from that checkpoint."""
        return False

    def wants_checkpoints(self) -> bool:
        """True to receive a Checkpoint after every epoch (and tuning trial); costs a copy."""
        return False

    def wants_files(self) -> bool:
        """True to receive files made mid-run (a stage's reconstructions); costs their making."""
        return False

    def file_ready(self, name: str, data: bytes) -> None:
        """A file the job made before its end (reconstructions.npz as each pretrain stage
        ends), to keep now; the job's final files replace it when it finishes."""

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        """Where the job stands: right after epoch_ended of the same epoch (tune: when a
        trial starts and ends). It holds copies, so it may be serialized later, elsewhere."""
