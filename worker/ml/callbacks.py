"""How a job tells the outside world what it is doing, and hears that it should stop.

The core knows nothing of where progress goes: the CLI draws bars, the queue's recorder
writes rows. Both subclass `Reporter` and override what they need.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras


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
    state: str  # complete | pruned | failed
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

    def stage_ended(self, stage: str, summary: dict) -> None:
        """A stage is done (or was cancelled); summary is JSON-able."""

    def trial_ended(self, trial: TrialReport) -> None:
        """A tuning trial finished, was pruned, or failed."""

    def should_stop(self) -> bool:
        """Asked between batches: True stops the job, keeping what it has so far."""
        return False


class ReporterCallback(keras.callbacks.Callback):
    """Bridges Keras' training loop to a Reporter: progress, metrics, cancellation."""

    def __init__(self, reporter: Reporter, *, stage: str, epochs: int, steps: int, batch_size: int):
        super().__init__()
        self.reporter = reporter
        self.stage = stage
        self.epochs = epochs
        self.steps = steps
        self.batch_size = batch_size
        self.cancelled = False
        self._epoch = 0
        self._epoch_start = 0.0
        self._train_end = 0.0
        self._steps_done = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        elapsed = time.perf_counter() - self._epoch_start
        done = batch + 1
        self._steps_done = done
        rate = done * self.batch_size / elapsed if elapsed > 0 else 0.0
        per_step = elapsed / done
        remaining = (self.steps - done) + (self.epochs - self._epoch) * self.steps
        self._train_end = time.perf_counter()
        self.reporter.batch_ended(
            Progress(
                self.stage, self._epoch, self.epochs, done, self.steps, rate, remaining * per_step
            )
        )
        if self.reporter.should_stop():
            self.cancelled = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        seconds = time.perf_counter() - self._epoch_start
        train_seconds = max(self._train_end - self._epoch_start, 1e-9)
        metrics["epoch_seconds"] = seconds
        # Steps actually run: a cancelled epoch ends early.
        metrics["images_per_sec"] = self._steps_done * self.batch_size / train_seconds
        self.reporter.epoch_ended(self.stage, epoch + 1, metrics)
