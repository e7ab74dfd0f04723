"""A test-set evaluation made after a run stopped ("evaluate now" on a cancelled or failed
finetune): stored with its files in the caller's transaction, the run's status untouched.

At most one is queued per run at a time: the request that queues it marks the run
(`evaluation_queued_at`, taken by one conditional UPDATE, so of fifty clicks at once one
wins) and whatever ends it clears the mark: the evaluation stored, its failure recorded, or
the worker skipping it. A mark older than STACKLAB_EVALUATION_LOST_AFTER_SECONDS is taken
for lost (its message dropped, or its worker killed before it said anything) and may be
taken again; the worst that leaves is a second message, which finds the first's evaluation
and does nothing. The mark is stamped and judged by the database's clock (store.clock)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from store import clock
from store.artifacts import service as artifacts_service
from store.base import JSONObject
from store.dml import execute_dml
from store.runs.models import Run


def store_evaluation(
    *, session: Session, run_id: int, evaluation: JSONObject, files: list[Path]
) -> bool:
    """Files and result["evaluation"] (marked partial) of a stopped run; False, writing
    nothing, when the run is gone, moved on (re-queued) or was evaluated already."""
    # Take the run's row first (a no-op UPDATE: PostgreSQL locks the row, SQLite the
    # database), so of two copies of one message the second waits, then sees the first's.
    touched = execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id)
        .values(status=Run.status)
        .execution_options(synchronize_session=False),
    )
    run = session.get(Run, run_id, populate_existing=True) if touched else None
    if run is None or not run.status.is_stopped or (run.result or {}).get("evaluation"):
        release(session=session, run_id=run_id)
        return False
    for path in files:
        artifacts_service.store_file(session=session, path=path, run_id=run_id)
    stamped = {**evaluation, "partial": True, "evaluated_at": clock.now(session).isoformat()}
    result = {k: v for k, v in (run.result or {}).items() if k != "evaluation_error"}
    run.result = {**result, "evaluation": stamped}
    run.evaluation_queued_at = run.evaluation_task_id = None
    session.flush()
    return True


def store_failure(*, session: Session, run_id: int, error: str) -> None:
    """Why an evaluation could not be made (shown on the run page instead of waiting)."""
    run = session.get(Run, run_id)
    if run is not None and not (run.result or {}).get("evaluation"):
        failure = {"error": error[:2000], "at": clock.now(session).isoformat()}
        run.result = {**(run.result or {}), "evaluation_error": failure}
        session.flush()
    release(session=session, run_id=run_id)


def claim(*, session: Session, run_id: int, lost_after: float) -> datetime | None:
    """Mark the run's evaluation queued, unless one is (and is not yet taken for lost after
    `lost_after` seconds, by the database's clock): the mark's time, or None when another
    request holds it."""
    now = clock.now(session)
    free = or_(
        Run.evaluation_queued_at.is_(None),
        Run.evaluation_queued_at < now - timedelta(seconds=lost_after),
    )
    touched = execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id, free)
        .values(evaluation_queued_at=now, evaluation_task_id=None)
        .execution_options(synchronize_session=False),
    )
    return now if touched else None


def note_task(*, session: Session, run_id: int, task_id: str) -> None:
    """The queued evaluation's task id (what a duplicate request is answered with)."""
    execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id, Run.evaluation_queued_at.is_not(None))
        .values(evaluation_task_id=task_id)
        .execution_options(synchronize_session=False),
    )


def release(*, session: Session, run_id: int) -> None:
    """No evaluation of the run is queued any more (it ended, failed, was skipped or could
    not be sent): the next "evaluate now" may queue one."""
    execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id, Run.evaluation_queued_at.is_not(None))
        .values(evaluation_queued_at=None, evaluation_task_id=None)
        .execution_options(synchronize_session=False),
    )
