"""A test-set evaluation made after a run stopped ("evaluate now" on a cancelled or failed
finetune): stored with its files in the caller's transaction, the run's status untouched."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session

from store.artifacts import service as artifacts_service
from store.base import JSONObject
from store.dml import execute_dml
from store.runs.models import Run
from store.timeutil import utcnow


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
        return False
    for path in files:
        artifacts_service.store_file(session=session, path=path, run_id=run_id)
    stamped = {**evaluation, "partial": True, "evaluated_at": utcnow().isoformat()}
    result = {k: v for k, v in (run.result or {}).items() if k != "evaluation_error"}
    run.result = {**result, "evaluation": stamped}
    session.flush()
    return True


def store_failure(*, session: Session, run_id: int, error: str) -> None:
    """Why an evaluation could not be made (shown on the run page instead of waiting)."""
    run = session.get(Run, run_id)
    if run is not None and not (run.result or {}).get("evaluation"):
        failure = {"error": error[:2000], "at": utcnow().isoformat()}
        run.result = {**(run.result or {}), "evaluation_error": failure}
        session.flush()
