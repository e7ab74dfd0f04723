"""The slow kind's worker entry point (tests/cli/slowkind.py): one held batch an epoch,
stopping at a batch's end when told to (cancel, or its worker stopping)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from jobspec.outcome import JobOutcome
from tests.cli.slowkind import HOLD_DIR_ENV, STAGE, SlowBatchConfig
from worker.jobs import JobContext
from worker.ml.reporting import Progress

POLL_SECONDS = 0.05


def hold(config: SlowBatchConfig, context: JobContext) -> JobOutcome:
    """Run `config.epochs` held batches; stop early when the reporter says so."""
    reporter = context.reporter
    reporter.stage_started(STAGE, epochs=config.epochs, steps=1, images=1)
    done = 0
    for epoch in range(1, config.epochs + 1):
        _one_batch()
        reporter.batch_ended(Progress(STAGE, epoch, config.epochs, 1, 1, 1.0, 0.0))
        if reporter.should_stop():  # a training loop looks at a batch's end, as Keras does
            break
        reporter.epoch_ended(STAGE, epoch, {"loss": 1.0 / epoch, "val_loss": 1.0 / epoch})
        done = epoch
    cancelled = done < config.epochs
    reporter.stage_ended(STAGE, {"epochs_run": done, "cancelled": cancelled})
    return JobOutcome(cancelled=cancelled, result={"epochs": done})


def _one_batch() -> None:
    hold_dir = os.environ.get(HOLD_DIR_ENV)
    if not hold_dir:
        time.sleep(POLL_SECONDS)
        return
    (Path(hold_dir) / "in-batch").touch()
    while not (Path(hold_dir) / "release").exists():
        time.sleep(POLL_SECONDS)
