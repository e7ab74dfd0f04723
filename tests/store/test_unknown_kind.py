"""Runs of a kind this process does not know (a plug-in uninstalled, or installed in the
workers only) never break what the store does for the other runs: the upkeep still
re-sends theirs, and a re-queue is refused before anything changes."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from jobspec.status import RunStatus
from store import queue
from store.db import session_scope
from store.errors import InvalidRequest
from store.runs import launch, upkeep
from store.runs import service as runs_service
from store.runs.models import Run
from store.timeutil import utcnow

GONE = "uninstalled-plugin"  # no module registers it


def queued_run(dataset_id: int, kind: str, age_seconds: float) -> int:
    """A queued run whose message never went out, queued `age_seconds` ago."""
    with session_scope() as session:
        run = runs_service.create_run(
            session=session, kind=kind, name=kind, params={}, dataset_id=dataset_id
        )
        run.queued_at = utcnow() - timedelta(seconds=age_seconds)
        return run.id


def test_the_upkeep_sends_the_other_runs_past_one_of_an_unknown_kind(store):
    unknown = queued_run(store, GONE, age_seconds=60)  # the oldest: first in line
    known = queued_run(store, "finetune", age_seconds=30)
    sent: list[int] = []

    def send(kind: str, run_id: int) -> str:  # as queue.enqueue does, without a broker
        name = queue.task_name(kind)
        sent.append(run_id)
        return f"{name}-{run_id}"

    keeper = upkeep.Upkeep(
        session_scope=session_scope,
        send=send,
        settings=SimpleNamespace(
            preemption=False,  # these tests are not about setting runs aside
            stale_after_seconds=60,
            heartbeat_seconds=0.1,
            resend_after_seconds=60,
            import_timeout_seconds=900,
        ),
    )
    for _ in range(2):  # and again: the unknown one stays unsent, and is no reason to stop
        keeper.round()
    assert sent == [known]
    with session_scope() as session:
        assert session.get(Run, unknown).sent_at is None


def test_a_run_of_an_unknown_kind_is_not_requeued(store):
    run_id = queued_run(store, GONE, age_seconds=0)
    with session_scope() as session:
        session.get(Run, run_id).status = RunStatus.CANCELLED
    with session_scope() as session, pytest.raises(InvalidRequest) as refused:
        launch.requeue(session=session, run_id=run_id)
    assert refused.value.field == "kind" and GONE in refused.value.reason
    with session_scope() as session:
        assert session.get(Run, run_id).status == RunStatus.CANCELLED
