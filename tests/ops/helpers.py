"""Runs for the ops tests, written straight into the store as a worker and the upkeep do."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from jobspec.status import RunStatus
from store import clock
from store.db import session_scope
from store.notify import sender as notify_sender
from store.notify.models import WebhookDelivery
from store.notify.vocabulary import DeliveryState
from store.runs import attempts
from store.runs import service as runs_service
from store.runs.models import Run


def running_run(dataset_id: int, *, name: str = "hooked", group_id: int | None = None) -> int:
    """A pretrain claimed by a worker (attempt 1)."""
    with session_scope() as session:
        run_id = runs_service.create_run(
            session=session,
            kind="pretrain",
            name=name,
            params={},
            dataset_id=dataset_id,
            group_id=group_id,
        ).id
        attempts.claim(session=session, run_id=run_id, worker_host="h", device="CPU", versions={})
    return run_id


def finish(run_id: int, status: RunStatus, *, attempt: int = 1, error: str | None = None) -> None:
    """The worker's final write."""
    with session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=attempt, status=status, error=error)


def silence(run_id: int) -> None:
    """The run's worker last beat an hour ago (by the database's clock)."""
    with session_scope() as session:
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(heartbeat_at=clock.now(session) - timedelta(hours=1))
        )


def settle() -> None:
    """Leave earlier tests' events and deliveries out of this test's rounds (the module's
    database is shared): events dispatched to nobody, open deliveries closed."""
    with session_scope() as session:
        while notify_sender.dispatch(session, []):
            pass
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.state == DeliveryState.PENDING)
            .values(state=DeliveryState.FAILED)
        )
