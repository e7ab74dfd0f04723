"""Writing notifications into the outbox, in the transaction that makes them true.

`attempt_ended` is called where every attempt of a run ends (store.runs.attempts
`end_attempt`: the worker's fenced finish, its hand-back, the upkeep's give-up), after the
run's row has moved, so the run's new status is read in the same transaction and the event
commits (or rolls back) with the change itself: no change without its event, no event
without its change. It makes no network call and takes no lock but its own new row, so a
dead receiver can never hold up a run's final write; the web's sender
(store/notify/sender.py) delivers later. A study's end is derived by the sender from the
run events it dispatches (`study_event`), after they committed.

One exception to "no change without its event": a store that refuses the event for good
(a full disk where the status change alone still fits; SQLite then rolls the whole
transaction back) fails that transaction once, and for SKIP_SECONDS this process writes no
events, so the caller's retry (the worker's failure record alone, the upkeep's next round)
lands the change without one. The event is lost, never the run's final write.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from jobspec.status import AttemptOutcome, RunStatus
from store import clock, faults
from store.base import JSONObject
from store.notify.models import OutboxEvent
from store.notify.vocabulary import NotifyEvent
from store.runs.models import Run, RunGroup

log = logging.getLogger(__name__)

ERROR_CHARS = 1000  # of a run's error, in a message
SKIP_SECONDS = 60.0  # events not written after the store refused one (a full disk)
# This process's store refused an event (monotonic time until which events are skipped):
# a one-element list, so no `global` statement.
_skip_until = [0.0]
BY_STATUS = {
    RunStatus.SUCCEEDED: NotifyEvent.RUN_SUCCEEDED,
    RunStatus.FAILED: NotifyEvent.RUN_FAILED,
    RunStatus.CANCELLED: NotifyEvent.RUN_CANCELLED,
}


def event_for(outcome: AttemptOutcome, status: RunStatus) -> NotifyEvent | None:
    """What an attempt's end tells, given the run's status after it (None: nothing worth
    a message: a worker stopping or a run set aside, both resumed later)."""
    if status.is_finished:
        return BY_STATUS[status]
    if outcome is AttemptOutcome.LOST:
        return NotifyEvent.RUN_WORKER_LOST
    return None


def attempt_ended(session: Session, run_id: int, attempt: int, outcome: AttemptOutcome) -> None:
    """Add the outbox event of attempt `attempt` of run `run_id` ending with `outcome`,
    in the caller's transaction (a second call for the same attempt adds nothing)."""
    row = session.execute(
        select(
            Run.name,
            Run.kind,
            Run.status,
            Run.error,
            Run.group_id,
            Run.max_attempts,
            Run.created_at,
        ).where(Run.id == run_id)
    ).first()
    if row is None:
        return
    event = event_for(outcome, RunStatus(row.status))
    if event is None:
        return
    run: JSONObject = {
        "id": run_id,
        "name": row.name,
        "kind": row.kind,
        "status": RunStatus(row.status).value,
        "attempt": attempt,
        "max_attempts": row.max_attempts,
        "error": (row.error or "")[:ERROR_CHARS] or None,
        "path": f"/runs/{run_id}",
    }
    # The run's creation in the key: SQLite reuses a deleted run's id (runs has no
    # AUTOINCREMENT), and a new run 12's event must not meet old run 12's, kept a week.
    born = clock.at(row.created_at).strftime("%Y%m%dT%H%M%S%f")
    key = f"run:{run_id}:{born}:attempt:{attempt}"
    _write(session, key=key, event=event, run=run, group_id=row.group_id)


def _write(
    session: Session, *, key: str, event: NotifyEvent, run: JSONObject, group_id: int | None
) -> None:
    """The run's event, unless this process's store refused one lately (see above)."""
    run_id = run["id"]
    if time.monotonic() < _skip_until[0]:
        log.warning(
            "run %s: its %s notification was not stored (the store is refusing "
            "writes it does not need)",
            run_id,
            event,
        )
        return
    try:
        add(
            session,
            key=key,
            event=event,
            payload={"run": run},
            run_id=run_id,
            group_id=group_id,
        )
    except DBAPIError as err:
        fault = faults.classify(err)
        if fault is not None and not fault.transient:
            # A full disk or a read-only store: the caller's retry of the same change
            # (the worker's failure record alone, the upkeep's next round) goes without
            # its event for a while, so the event never keeps the change from landing.
            _skip_until[0] = time.monotonic() + SKIP_SECONDS
        raise


def study_event(session: Session, group_id: int) -> bool:
    """When every run of group `group_id` has ended, add its study.finished event (once
    per time it ends: a re-queued run that ends again makes a new one). Returns whether
    the group has ended."""
    counts = dict(
        session.execute(
            select(Run.status, func.count()).where(Run.group_id == group_id).group_by(Run.status)
        ).all()
    )
    if not counts or any(RunStatus(status).is_active for status in counts):
        return False
    group = session.get(RunGroup, group_id)
    if group is None:
        return False
    last = session.scalar(select(func.max(Run.finished_at)).where(Run.group_id == group_id))
    study: JSONObject = {
        "id": group_id,
        "name": group.name,
        "kind": group.kind,
        "runs": {RunStatus(status).value: int(n) for status, n in counts.items()},
        "path": f"/groups/{group_id}",
    }
    stamp = clock.at(last).isoformat() if last is not None else "never"
    add(
        session,
        key=f"study:{group_id}:{stamp}"[:100],
        event=NotifyEvent.STUDY_FINISHED,
        payload={"study": study},
        group_id=group_id,
    )
    return True


def add(
    session: Session,
    *,
    key: str,
    event: NotifyEvent,
    payload: JSONObject,
    run_id: int | None = None,
    group_id: int | None = None,
) -> None:
    """Insert one event unless its key is there already (never an error: the caller's
    transaction is a run's final write)."""
    values: dict[str, Any] = {
        "uid": uuid.uuid4().hex,
        "key": key,
        "event": event,
        "run_id": run_id,
        "group_id": group_id,
        "payload": {"event": event.value, **payload},
        "created_at": clock.now(session),
        "dispatched": False,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(OutboxEvent).values(**values).on_conflict_do_nothing()
    session.execute(statement)
