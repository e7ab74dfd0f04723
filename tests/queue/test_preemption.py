"""Preemption by checkpoint through a real worker: a running run is set aside at an epoch
boundary for a run of higher priority launched meanwhile, and resumes from that epoch."""

from __future__ import annotations

import re

import pytest

from jobspec.status import AttemptOutcome
from store.db import session_scope
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from tests.queue.test_scheduler_worker import finished, lane_stack, launch, read  # noqa: F401
from tests.stack import wait_for

pytestmark = pytest.mark.slow
EPOCHS = 8  # a few seconds each here: the urgent run comes while it trains


def test_a_running_run_is_set_aside_at_an_epoch_boundary_and_resumes_there(lane_stack):  # noqa: F811
    params = {
        "encoder": "scratch",
        "architecture": "single",
        "batch_size": 10,
        "early_stopping": {"patience": 1000},  # every epoch runs
    }
    with lane_stack.workers("preempt") as workers:
        workers.start("t1")  # the only worker: nobody is free for the urgent run
        low = launch(
            kind="finetune", dataset="demo-tiny", params={**params, "epochs": EPOCHS}, name="low"
        )
        wait_for(
            lambda: read(low.id).progress.get("epoch", 0) >= 2,
            timeout=120,
            what="the low-priority run to train",
        )
        high = launch(
            kind="finetune",
            dataset="demo-tiny",
            params={**params, "epochs": 1},
            name="urgent",
            priority=10,
        )
        high = finished(high.id)
        assert read(low.id).status in ("queued", "running")  # it went on after the urgent one
        low = finished(low.id)
    assert (high.status, low.status) == ("succeeded", "succeeded"), (high.error, low.error)
    with session_scope() as session:
        tries = runs_service.list_attempts(session, low.id)
        steps = [s for s, _ in metrics_service.series(session, low.id)["finetune/val_loss"]]
        said = [(a.number, a.outcome, a.note, a.resumed_from, a.started_at) for a in tries]
    assert [(number, outcome) for number, outcome, *_ in said] == [
        (1, AttemptOutcome.PREEMPTED),
        (2, AttemptOutcome.SUCCEEDED),
    ], said
    note = said[0][2] or ""
    want = rf"set aside for run #{high.id} \(priority 10\) at finetune epoch (\d+)"
    found = re.fullmatch(want, note)
    assert found, note
    epoch = int(found.group(1))
    assert 2 <= epoch < EPOCHS
    resumed = said[1][3]
    assert resumed and (resumed["stage"], resumed["epoch"]) == ("finetune", epoch)
    assert high.started_at <= said[1][4]  # the urgent run went first
    assert steps == list(range(1, EPOCHS + 1))  # every epoch once: nothing trained twice
    assert low.result["training"]["epochs_run"] == EPOCHS
