"""Re-sending lost queue messages, for runs and data set imports alike: is some worker idle
(so a queued message should have been taken), and one process's claim to send again.
Every time here is the database's (store.clock): a worker's last_seen and a row's sent_at
are stamped by it, and the cutoffs are measured on it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from jobspec.scheduling import Lane
from store import clock
from store.datasets.models import DatasetImport
from store.dml import execute_dml
from store.runs.models import Run
from store.workers.models import WorkerRecord


def a_worker_is_idle(
    session: Session, *, within: float, now: datetime | None = None, lane: Lane = Lane.TRAINING
) -> bool:
    """Some worker of `lane` reported in the last `within` seconds (by the database's
    clock, or `now` read from it) with nothing to do."""
    now = now or clock.now(session)
    idle = select(WorkerRecord.name).where(
        WorkerRecord.lane == lane,
        WorkerRecord.current_run_id.is_(None),
        WorkerRecord.last_seen >= now - timedelta(seconds=within),
    )
    return session.scalar(idle.limit(1)) is not None


def claim_send(
    session: Session,
    model: type[Run] | type[DatasetImport],
    row_id: int,
    waiting: ColumnElement[bool],
    *,
    resend_after: float,
) -> bool:
    """Compare-and-set on `model.sent_at`: the row is still `waiting` and unsent (or sent
    over `resend_after` s ago); True for the one process that gets to send it now."""
    now = clock.now(session)
    stale = or_(model.sent_at.is_(None), model.sent_at < now - timedelta(seconds=resend_after))
    claim = update(model).where(model.id == row_id, waiting, stale).values(sent_at=now)
    return bool(execute_dml(session, claim.execution_options(synchronize_session=False)))
