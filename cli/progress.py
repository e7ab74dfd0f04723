"""Terminal progress for the training core: tqdm bars, epoch lines, Ctrl-C to stop cleanly."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from tqdm import tqdm

from worker.ml.reporting import Progress, Reporter, TrialReport

# The metrics worth a place in the bar's postfix, in the order shown.
POSTFIX_METRICS = ("loss", "val_loss", "accuracy", "val_accuracy")


def format_metrics(metrics: dict[str, float]) -> str:
    """'loss 0.1234  val_loss 0.2345  ...' with timing metrics last and shorter."""
    parts = [f"{key} {value:.4f}" for key, value in metrics.items() if key in POSTFIX_METRICS]
    if "epoch_seconds" in metrics:
        parts.append(f"{metrics['epoch_seconds']:.1f} s")
    if "images_per_sec" in metrics:
        parts.append(f"{metrics['images_per_sec']:.0f} img/s")
    return "  ".join(parts)


def format_trial(trial: TrialReport) -> str:
    """One line for a finished tuning trial."""
    params = ", ".join(f"{key}={_short(value)}" for key, value in trial.params.items())
    value = "-" if trial.value is None else f"{trial.value:.5f}"
    seconds = f"{trial.seconds:.0f} s"
    return f"trial {trial.number}: {trial.state:<8} val_loss {value}  ({params})  {seconds}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class TqdmReporter(Reporter):
    """One bar per stage over all its batches, a line per epoch and per trial.

    Used as a context manager: inside it, the first Ctrl-C asks the job to stop after the
    current batch (it keeps and saves what it has); a second Ctrl-C aborts at once.
    """

    def __init__(self, *, disable: bool | None = None) -> None:
        # disable=None: bars only on a terminal; epoch lines are printed either way.
        self.disable = disable
        self.stop_requested = False
        self._bar: tqdm | None = None
        self._last: dict[str, float] = {}
        self._epochs = 0
        self._previous_handler: Any = None

    def __enter__(self) -> TqdmReporter:
        try:
            self._previous_handler = signal.signal(signal.SIGINT, self._on_interrupt)
        except ValueError:  # not the main thread: no signal handling, no clean stop
            self._previous_handler = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close_bar()
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        tqdm.write("Stopping after this batch and saving what is done; Ctrl-C again aborts.")

    def stage_started(self, stage: str, *, epochs: int, steps: int, images: int) -> None:
        """Open a bar over every batch of the stage."""
        self._close_bar()
        self._last, self._epochs = {}, epochs
        tqdm.write(f"{stage}: {epochs} epoch(s) x {steps} batches, {images} training images")
        self._bar = tqdm(
            total=epochs * steps, desc=stage, unit="batch", dynamic_ncols=True,
            disable=self.disable, leave=False,
        )  # fmt: skip

    def batch_ended(self, progress: Progress) -> None:
        """Move the bar; the postfix shows the epoch, speed and last epoch's losses."""
        if self._bar is None:
            return
        done = (progress.epoch - 1) * progress.steps + progress.step
        postfix = {"epoch": f"{progress.epoch}/{progress.epochs}"}
        postfix["img/s"] = f"{progress.images_per_sec:.0f}"
        postfix |= {key: f"{value:.4f}" for key, value in self._last.items()}
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(done - self._bar.n)

    def epoch_ended(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        """Print the epoch's metrics above the bar."""
        self._last = {k: v for k, v in metrics.items() if k in ("loss", "val_loss")}
        tqdm.write(f"{stage} epoch {epoch}/{self._epochs}: {format_metrics(metrics)}")

    def stage_ended(self, stage: str, summary: dict) -> None:
        """Close the stage's bar."""
        self._close_bar()
        if summary.get("cancelled"):
            tqdm.write(f"{stage}: stopped early on request")

    def trial_ended(self, trial: TrialReport) -> None:
        """Print the trial's outcome."""
        self._close_bar()
        tqdm.write(format_trial(trial))

    def should_stop(self) -> bool:
        """True once Ctrl-C was pressed."""
        return self.stop_requested

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
