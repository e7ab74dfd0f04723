"""Keras' side of reporting: the callback that feeds a training loop's progress, metrics and
checkpoints to a Reporter (worker.ml.reporting) and stops the fit when it says so.

Imported only where training runs; the Reporter protocol itself stays Keras-free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras

from worker.ml.reporting import Progress, Reporter

if TYPE_CHECKING:
    from worker.ml.checkpoint import Checkpoint


@dataclass
class FitState:
    """How far one stage's training got: what a resumed fit starts from."""

    epoch: int = 0  # epochs completed
    history: dict[str, list[float]] | None = None
    seconds: float = 0.0  # training time so far, over all attempts
    stopped: bool = False  # a callback (early stopping) ended training at `epoch`

    def finished(self, epochs: int) -> bool:
        """Nothing is left to train."""
        return self.stopped or self.epoch >= epochs

    def to_json(self) -> dict:
        """For a checkpoint's state."""
        return {
            "epoch": self.epoch,
            "history": self.history or {},
            "seconds": self.seconds,
            "stopped": self.stopped,
        }

    @classmethod
    def from_json(cls, data: dict) -> FitState:
        """Inverse of to_json."""
        history = {key: [float(v) for v in values] for key, values in data["history"].items()}
        return cls(int(data["epoch"]), history, float(data["seconds"]), bool(data["stopped"]))


class ReporterCallback(keras.callbacks.Callback):
    """Bridges Keras' training loop to a Reporter: progress, metrics, cancellation, checkpoints.

    Put it after every other callback, so a checkpoint sees their state of the same epoch.
    """

    def __init__(
        self,
        reporter: Reporter,
        *,
        stage: str,
        epochs: int,
        steps: int,
        batch_size: int,
        start: FitState | None = None,
        snapshot: Callable[[FitState], Checkpoint] | None = None,
    ):
        super().__init__()
        self.reporter = reporter
        self.stage = stage
        self.epochs = epochs
        self.steps = steps
        self.batch_size = batch_size
        self.cancelled = False
        self.start = start or FitState()
        # The history of the whole stage, earlier attempts included.
        self.history = {key: list(values) for key, values in (self.start.history or {}).items()}
        self.snapshot = snapshot if snapshot and reporter.wants_checkpoints() else None
        self._train_begin = time.perf_counter()  # made right before fit: its clock starts
        self._epoch = 0
        self._epoch_start = 0.0
        self._train_end = 0.0
        self._steps_done = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch + 1
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
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

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)
        seconds = time.perf_counter() - self._epoch_start
        train_seconds = max(self._train_end - self._epoch_start, 1e-9)
        metrics["epoch_seconds"] = seconds
        # Steps actually run: a cancelled epoch ends early.
        metrics["images_per_sec"] = self._steps_done * self.batch_size / train_seconds
        self.reporter.epoch_ended(self.stage, epoch + 1, metrics)
        # A cancelled epoch was cut short: nothing to resume from, and the run is over.
        if self.snapshot is not None and not self.cancelled:
            self.reporter.checkpoint(self.snapshot(self.state(epoch + 1)))
            # Paused (set aside for another run): the checkpoint just taken, made before
            # training was told to stop, is where the run resumes.
            if self.reporter.should_pause():
                self.cancelled = True
                self.model.stop_training = True

    def seconds(self) -> float:
        """Training time of the stage so far, earlier attempts included."""
        return self.start.seconds + time.perf_counter() - self._train_begin

    def state(self, epochs_done: int) -> FitState:
        """A copy of where training stands after epochs_done epochs."""
        history = {key: list(values) for key, values in self.history.items()}
        return FitState(epochs_done, history, self.seconds(), bool(self.model.stop_training))
