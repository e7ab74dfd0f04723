"""Ordinary faults with real workers: a frozen worker, a killed one, a stopped one, a lost
message. Runs resume from their last checkpoint and no attempt writes into another's run."""

from __future__ import annotations

import os
import signal
import time

import pytest

from store.db import session_scope
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.schemas import AttemptRead, RunRead
from tests.queue.test_queue import finished, launch, read, workers_online
from tests.stack import wait_for

pytestmark = pytest.mark.slow
# About a second an epoch on 2 CPU cores: long enough that a fault lands mid-run, short
# enough to keep the suite short. Early stopping never ends these runs before epoch 6.
SIX_EPOCHS = {
    "encoder": "scratch",
    "architecture": "single",
    "epochs": 6,
    "batch_size": 20,
    "bn_momentum": 0.9,
    "early_stopping": {"patience": 100},
}


def steps(run_id: int, key: str = "finetune/loss") -> list[int]:
    with session_scope() as session:
        return [step for step, _ in metrics_service.series(session, run_id).get(key, [])]


def attempt_rows(run_id: int) -> list[AttemptRead]:
    with session_scope() as session:
        return [AttemptRead.model_validate(a) for a in runs_service.list_attempts(session, run_id)]


def wall_times(run_id: int) -> dict[int, float]:
    from store.runs.models import Metric

    with session_scope() as session:
        rows = session.query(Metric.step, Metric.wall_time).filter(
            Metric.run_id == run_id, Metric.key == "finetune/loss"
        )
        return dict(rows.all())


def checkpointed(run_id: int, epoch: int) -> RunRead | None:
    run = read(run_id)
    return run if (run.checkpoint or {}).get("epoch", 0) >= epoch else None


def child_pid(run: RunRead) -> int:
    return int(run.worker_host.rsplit(":", 1)[1])


def two_idle_workers() -> None:
    wait_for(lambda: workers_online() >= 2, timeout=120, what="two workers online")


def worker_logs(stack) -> str:
    return "".join(p.read_text() for p in stack["workers"].log_dir.glob("w*.log"))


def attempt_stopped(stack, run_id: int, attempt: int) -> bool:
    """The attempt's worker logged that it stopped without writing (worker/runner.py)."""
    said = (
        f"run {run_id}: attempt {attempt} stopped, nothing more written",
        f"run {run_id}: attempt {attempt} was superseded",
        f"run {run_id}: failure not recorded, attempt superseded",
    )
    return any(line in worker_logs(stack) for line in said)


def test_a_frozen_worker_that_wakes_up_writes_nothing_into_the_run(stack):
    if stack["kind"] == "embedded":
        # Open finding (issue 20): on the embedded broker, right after the previous test's
        # worker restart, the frozen run was given up and re-sent but no worker took it over
        # within 90 s (1 of 4 full runs, 2026-12-06). Runs on Redis + PostgreSQL until then.
        pytest.skip("embedded takeover after a worker restart: open finding, see issue 20")
    two_idle_workers()
    run = launch(kind="finetune", dataset="demo-tiny", params=SIX_EPOCHS)[0]
    frozen = wait_for(lambda: checkpointed(run.id, 1), timeout=120, what="epoch 1 stored")
    os.kill(child_pid(frozen), signal.SIGSTOP)  # a swap storm, a GC pause, a table lock...
    try:
        wait_for(
            lambda: (r := read(run.id)).attempts == 2 and r.status == "running",
            timeout=90,
            what="another worker to take the run over",
        )
    finally:
        os.kill(child_pid(frozen), signal.SIGCONT)
    done = finished(run.id)
    assert done.status == "succeeded", done.error
    assert done.worker_host != frozen.worker_host
    assert steps(run.id) == [1, 2, 3, 4, 5, 6]  # each epoch once, whoever wrote it
    rows = attempt_rows(run.id)
    assert [(a.number, a.outcome) for a in rows] == [(1, "lost"), (2, "succeeded")]
    assert rows[0].worker_host == frozen.worker_host and rows[1].worker_host == done.worker_host
    assert rows[1].resumed_from["epoch"] >= 1
    # The woken attempt noticed and stopped (its worker says so); its late final write
    # never landed.
    wait_for(lambda: attempt_stopped(stack, run.id, 1), timeout=120, what="attempt 1 to stop")
    again = read(run.id)
    assert (again.status, again.worker_host, again.finished_at) == (
        "succeeded",
        done.worker_host,
        done.finished_at,
    )


def test_a_worker_killed_in_epoch_3_of_6_is_resumed_at_epoch_3(stack):
    two_idle_workers()
    run = launch(kind="finetune", dataset="demo-tiny", params=SIX_EPOCHS)[0]
    victim = wait_for(lambda: checkpointed(run.id, 2), timeout=120, what="epoch 2 stored")
    os.kill(child_pid(victim), signal.SIGKILL)  # the OOM killer, a crash, a pulled plug
    killed = time.time()
    done = finished(run.id)
    assert done.status == "succeeded", done.error
    rows = attempt_rows(run.id)
    assert [(a.number, a.outcome) for a in rows] == [(1, "lost"), (2, "succeeded")]
    assert rows[1].resumed_from == {"stage": "finetune", "epoch": 2}
    assert steps(run.id) == [1, 2, 3, 4, 5, 6]
    walls = wall_times(run.id)
    resumed = rows[1].started_at.timestamp()
    assert walls[1] < walls[2] < killed < resumed < walls[3]  # epochs 1-2 kept, not re-run
    # What resuming saves in time, against starting over: bench/resume_overhead.py.


def test_a_run_whose_message_never_reached_the_broker_is_sent_and_finishes(stack):
    from store.datasets import service as datasets_service

    with session_scope() as session:  # the web process died between commit and send
        run = runs_service.create_run(
            session=session,
            kind="finetune",
            name="never sent",
            params={**SIX_EPOCHS, "epochs": 1},
            dataset_id=datasets_service.get_by_name(session, "demo-tiny").id,
        )
        run_id = run.id
    done = finished(run_id, timeout=120)
    assert done.status == "succeeded", done.error
    assert done.sent_at is not None


def test_a_20_s_database_outage_mid_run_loses_nothing_and_ends_nothing(stack):
    if stack["db_proxy"] is None:
        pytest.skip("the embedded SQLite store is a local file: it cannot be cut off")
    two_idle_workers()
    run = launch(kind="finetune", dataset="demo-tiny", params={**SIX_EPOCHS, "epochs": 4})[0]
    wait_for(lambda: checkpointed(run.id, 1), timeout=120, what="epoch 1 stored")
    stack["db_proxy"].refuse()  # every process loses the database: a restart, a blip
    cut = time.monotonic()
    buffering = f"run {run.id}: store unreachable, buffering"
    wait_for(lambda: buffering in worker_logs(stack), timeout=120, what="its writes to wait")
    # The fault itself: the outage lasts 20 s, five heartbeat windows (STALE_AFTER 4 s), while
    # training goes on, its writes wait in memory and its beats keep trying.
    wait_for(lambda: time.monotonic() - cut >= 20, timeout=60, what="the outage's 20 s")
    stack["db_proxy"].restore()
    done = finished(run.id, timeout=180)
    assert done.status == "succeeded", (done.error, done.traceback)
    assert steps(run.id) == [1, 2, 3, 4]  # no epoch lost, none twice
    assert [(a.number, a.outcome) for a in attempt_rows(run.id)] == [(1, "succeeded")]
    assert done.result["training"]["epochs_run"] == 4
