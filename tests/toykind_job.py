"""The toy kind's worker entry point (tests/toykind.py): one epoch per sheep, each logging
a loss, until the count is done or the run is cancelled."""

from __future__ import annotations

import time

from jobspec.outcome import JobOutcome
from tests.toykind import STAGE, UNLUCKY, SheepCountConfig
from worker.jobs import JobContext
from worker.ml.reporting import Progress

EPOCH_SECONDS = 0.05  # the job's own pace, so a long count stays running until cancelled


def count(config: SheepCountConfig, context: JobContext) -> JobOutcome:
    """Count `config.sheep` sheep; raise on the unlucky count (a failed run)."""
    if config.sheep == UNLUCKY:
        raise ValueError(f"{UNLUCKY} sheep: unlucky, not counting")
    reporter = context.reporter
    reporter.stage_started(STAGE, epochs=config.sheep, steps=1, images=1)
    counted = 0
    for epoch in range(1, config.sheep + 1):
        if reporter.should_stop():
            break
        time.sleep(EPOCH_SECONDS)
        counted = epoch
        left = (config.sheep - epoch) * EPOCH_SECONDS
        reporter.batch_ended(Progress(STAGE, epoch, config.sheep, 1, 1, 1 / EPOCH_SECONDS, left))
        metrics = {"loss": 1.0 / epoch, "val_loss": 1.0 / epoch, "images_per_sec": 20.0}
        reporter.epoch_ended(STAGE, epoch, metrics)
    cancelled = counted < config.sheep
    reporter.stage_ended(STAGE, {"epochs_run": counted, "cancelled": cancelled})
    return JobOutcome(cancelled=cancelled, result={"counted": counted})
