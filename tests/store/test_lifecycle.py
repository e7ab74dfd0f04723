"""A run's attempts in the store: fencing, forward-only status, retries, re-sends, resume."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from store.artifacts import service as artifacts_service
from store.db import session_scope
from store.errors import AttemptSuperseded, InvalidRequest
from store.runs import attempts, checkpoints, upkeep
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.models import Metric, Run
from store.timeutil import utcnow
from store.workers import service as workers_service


def new_run(dataset_id: int, max_attempts: int = 2, **fields) -> int:
    with session_scope() as session:
        return runs_service.create_run(
            session=session,
            kind="finetune",
            name="t",
            params={"runtime": {"max_attempts": max_attempts}},
            dataset_id=dataset_id,
            **fields,
        ).id


def claim(run_id: int, host: str = "h:1"):
    with session_scope() as session:
        return attempts.claim(
            session=session, run_id=run_id, worker_host=host, device="CPU", versions={}
        )


def silence(run_id: int, seconds: float = 120) -> None:
    with session_scope() as session:
        session.get(Run, run_id).heartbeat_at = utcnow() - timedelta(seconds=seconds)


def reap(*own: int) -> list[tuple[int, str]]:
    """Reap as the upkeep does; what it did to these runs only: the module's other tests
    share the database and leave runs running, whose heartbeats age too on a slow machine."""
    with session_scope() as session:
        reaped = upkeep.reap_stale(session=session, stale_after=60)
    return [(run_id, status) for run_id, status in reaped if run_id in own]


def mine(entries: list[tuple[int, str]], *own: int) -> list[tuple[int, str]]:
    """The (run id, ...) entries of these runs: a round's work on other tests' runs is theirs."""
    return [entry for entry in entries if entry[0] in own]


def log(run_id: int, attempt: int, step: int, loss: float) -> None:
    with session_scope() as session:
        attempts.fence(session, run_id, attempt)
        metrics_service.log_epoch(
            session=session, run_id=run_id, stage="finetune", step=step, values={"loss": loss}
        )


def read(run_id: int) -> Run:
    with session_scope() as session:
        return session.get(Run, run_id)


def steps(run_id: int) -> list[int]:
    with session_scope() as session:
        return [s for s, _ in metrics_service.series(session, run_id).get("finetune/loss", [])]


def test_an_attempt_given_up_for_dead_can_write_nothing_more(store):
    run_id = new_run(store)
    first = claim(run_id, "old:1")
    log(run_id, first.attempt, 1, 1.0)
    silence(run_id)
    assert reap(run_id) == [(run_id, "queued")]  # one retry left: back in the queue
    second = claim(run_id, "new:2")
    assert (first.attempt, second.attempt) == (1, 2)
    # The frozen worker wakes up: every kind of write it tries is refused.
    with pytest.raises(AttemptSuperseded, match="attempt 2 took the run over"):
        log(run_id, first.attempt, 2, 0.5)
    with pytest.raises(AttemptSuperseded), session_scope() as session:
        attempts.beat(session=session, run_id=run_id, attempt=1, progress={"epoch": 9})
    with pytest.raises(AttemptSuperseded), session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status="succeeded")
    log(run_id, second.attempt, 1, 0.4)  # no checkpoint: attempt 2 started over
    run = read(run_id)
    assert (run.status, run.worker_host, run.progress.get("epoch")) == ("running", "new:2", None)
    with session_scope() as session:
        assert metrics_service.series(session, run_id) == {"finetune/loss": [(1, 0.4)]}
    with session_scope() as session:
        outcomes = [(a.number, a.outcome) for a in runs_service.list_attempts(session, run_id)]
    assert outcomes == [(1, "lost"), (2, "running")]


def test_a_finished_run_is_never_reopened(store):
    run_id = new_run(store)
    claim(run_id)
    with session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status="succeeded")
    silence(run_id)
    assert reap(run_id) == []
    with pytest.raises(AttemptSuperseded, match="succeeded"), session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status="failed", error="late")
    with pytest.raises(InvalidRequest), session_scope() as session:
        runs_service.requeue(session=session, run_id=run_id)
    assert claim(run_id) is None
    assert read(run_id).status == "succeeded" and read(run_id).error is None


def test_metric_rows_are_unique_per_run_key_and_step(store):
    run_id = new_run(store)
    claim(run_id)
    log(run_id, 1, 1, 1.0)
    log(run_id, 1, 1, 9.0)  # a duplicate delivery is skipped, not stored twice
    assert steps(run_id) == [1]
    with pytest.raises(IntegrityError), session_scope() as session:
        row = {"run_id": run_id, "key": "finetune/loss", "step": 1, "value": 2.0, "wall_time": 0.0}
        session.execute(insert(Metric), [row])  # the schema itself refuses it
    with session_scope() as session:
        assert metrics_service.summaries(session, run_id)["finetune/loss"]["last_value"] == 1.0


def test_a_lost_run_is_retried_until_max_attempts_then_failed(store):
    run_id = new_run(store, max_attempts=2)
    claim(run_id)
    silence(run_id)
    assert reap(run_id) == [(run_id, "queued")]
    claim(run_id)
    silence(run_id)
    assert reap(run_id) == [(run_id, "failed")]
    run = read(run_id)
    assert "attempt 2 of 2" in run.error and run.finished_at is not None
    with session_scope() as session:  # a user's re-queue refills the automatic retries
        assert runs_service.requeue(session=session, run_id=run_id).retries_left == 1


def test_a_lost_run_with_a_cancel_pending_ends_cancelled(store):
    run_id = new_run(store)
    claim(run_id)
    with session_scope() as session:
        runs_service.request_cancel(session=session, run_id=run_id)
    silence(run_id)
    assert reap(run_id) == [(run_id, "cancelled")]


def test_resume_keeps_what_the_checkpoint_covers_and_requeue_deletes_nothing(store):
    run_id = new_run(store)
    claim(run_id)
    for step, loss in [(1, 1.0), (2, 0.5)]:
        log(run_id, 1, step, loss)
    with session_scope() as session:
        attempts.fence(session, run_id, 1)
        checkpoints.save(
            session=session, run_id=run_id, attempt=1, data=b"ckpt-2", stage="finetune", epoch=2
        )
    log(run_id, 1, 3, 0.1)  # a row past the checkpoint (cannot happen via the recorder)
    with session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status="failed", error="x")
        runs_service.requeue(session=session, run_id=run_id)
    assert steps(run_id) == [1, 2, 3]  # re-queueing deleted nothing
    second = claim(run_id)
    assert second.resume_from == {"stage": "finetune", "epoch": 2}
    assert steps(run_id) == [1, 2]
    with session_scope() as session:
        assert checkpoints.load(session, run_id) == b"ckpt-2"
        summary = metrics_service.summaries(session, run_id)["finetune/loss"]
    assert (summary["last_step"], summary["best_value"]) == (2, 0.5)


def test_a_fresh_requeue_clears_metrics_and_files_once_a_worker_claims_it(store, tmp_path):
    run_id = new_run(store)
    claim(run_id)
    log(run_id, 1, 1, 1.0)
    weights = tmp_path / "classifier.weights.h5"
    weights.write_bytes(b"w" * 100)
    with session_scope() as session:
        artifacts_service.store_file(session=session, path=weights, run_id=run_id)
        checkpoints.save(
            session=session, run_id=run_id, attempt=1, data=b"c", stage="finetune", epoch=1
        )
        attempts.finish(session=session, run_id=run_id, attempt=1, status="cancelled")
        runs_service.requeue(session=session, run_id=run_id, fresh=True)
    with session_scope() as session:
        assert len(artifacts_service.list_run_artifacts(session, run_id)) == 2
    assert claim(run_id).resume_from is None
    assert steps(run_id) == []
    with session_scope() as session:
        assert artifacts_service.list_run_artifacts(session, run_id) == []
        assert checkpoints.load(session, run_id) is None


def _report_idle(name: str) -> None:
    with session_scope() as session:
        workers_service.report(
            session=session, name=name, host="h", device="CPU", current_run_id=None
        )


def test_queued_runs_whose_message_never_came_are_sent_again_once(store):
    run_id = new_run(store)
    parent = new_run(store)
    waiting = new_run(store, parent_run_id=parent)  # waits for its parent: left alone
    backlog = new_run(store)
    with session_scope() as session:
        for rid in (run_id, waiting):
            session.get(Run, rid).queued_at = utcnow() - timedelta(seconds=30)
        session.get(Run, backlog).sent_at = utcnow() - timedelta(seconds=300)
        session.get(Run, parent).sent_at = utcnow()
    own = (run_id, parent, waiting, backlog)
    with session_scope() as session:
        due = upkeep.due_for_send(session, never_sent_grace=10, resend_after=60, idle_within=3600)
    assert [rid for rid, _ in mine(due, *own)] == [run_id]  # no idle worker: backlog waits
    _report_idle("idle-worker")
    with session_scope() as session:
        due = upkeep.due_for_send(session, never_sent_grace=10, resend_after=60, idle_within=3600)
        assert {rid for rid, _ in mine(due, *own)} == {run_id, backlog}
        assert upkeep.take_for_send(session, run_id, resend_after=60)
        assert not upkeep.take_for_send(session, run_id, resend_after=60)  # one sender wins


def test_upkeep_reaps_only_after_reaching_the_store_for_a_whole_window(store):
    run_id = new_run(store)
    claim(run_id)
    silence(run_id, 5)
    sent = []
    keeper = upkeep.Upkeep(
        session_scope=session_scope,
        send=lambda kind, rid: sent.append(rid) or f"task-{rid}",
        settings=SimpleNamespace(
            preemption=False,  # these tests are not about setting runs aside
            stale_after_seconds=2,
            heartbeat_seconds=0.1,
            resend_after_seconds=60,
            import_timeout_seconds=900,
        ),
    )
    assert keeper.round()["reaped"] == []  # just (re)connected: give workers a window
    keeper.store_up_since -= 3
    keeper.store_down()  # e.g. the worker's own report failed: the window starts again
    assert keeper.round()["reaped"] == []
    keeper.store_up_since -= 3
    assert mine(keeper.round()["reaped"], run_id) == [(run_id, "queued")]
    with session_scope() as session:
        session.get(Run, run_id).queued_at = utcnow() - timedelta(seconds=5)
    assert run_id in keeper.round()["sent"] and sent.count(run_id) == 1
    assert read(run_id).task_id == f"task-{run_id}"


def _keeper(sent: list[int], waiting) -> upkeep.Upkeep:
    return upkeep.Upkeep(
        session_scope=session_scope,
        send=lambda kind, rid: sent.append(rid) or f"task-{rid}",
        waiting=waiting,
        settings=SimpleNamespace(
            preemption=False,
            stale_after_seconds=3600,
            heartbeat_seconds=0.1,
            resend_after_seconds=60,
            import_timeout_seconds=900,
        ),
    )


def _claimable() -> int:
    with session_scope() as session:
        return upkeep.wakes_wanted(session, 0)


def test_re_sends_stop_while_the_broker_holds_a_wake_for_every_claimable_run(store):
    """A worker that reports idle but takes nothing (a deaf consumer) must not be sent a
    message per run every window: the broker's backlog stays within the queue's length."""
    own = [new_run(store) for _ in range(3)]
    _report_idle("deaf-worker")
    with session_scope() as session:
        for rid in own:
            session.get(Run, rid).sent_at = utcnow() - timedelta(seconds=300)
    sent: list[int] = []
    held = {"n": _claimable()}  # a wake waits for every claimable run, other tests' too
    assert held["n"] >= 3
    assert _keeper(sent, lambda _lane: held["n"]).round()["sent"] == [] and sent == []
    held["n"] -= 1  # one wake was taken: one more is wanted, no more
    assert len(_keeper(sent, lambda _lane: held["n"]).round()["sent"]) == 1
    assert len(sent) == 1
    with session_scope() as session:
        assert upkeep.wakes_wanted(session, 10**6) == 0  # never negative


def test_when_the_broker_cannot_say_what_it_holds_every_due_run_is_sent(store):
    run_id = new_run(store)
    _report_idle("idle-worker")
    with session_scope() as session:
        session.get(Run, run_id).sent_at = utcnow() - timedelta(seconds=300)
        assert upkeep.wakes_wanted(session, None) is None
    sent: list[int] = []
    assert run_id in _keeper(sent, lambda _lane: None).round()["sent"]
