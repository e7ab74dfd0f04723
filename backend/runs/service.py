"""A run's life: created queued, claimed by a worker, finished; cancel, re-queue, reap."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from backend.artifacts.models import Artifact
from backend.errors import InvalidRequest, NotFound
from backend.runs.models import FINISHED, Metric, MetricSummary, Run, TuneTrial
from backend.timeutil import utcnow


def create_run(*, session: Session, **fields) -> Run:
    """A new queued run (committed by the caller before it is enqueued)."""
    run = Run(status="queued", **fields)
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> Run:
    """A run by id, or NotFound."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound("run", run_id)
    return run


def claim_run(
    *, session: Session, run_id: int, worker_host: str, device: str, versions: dict
) -> Run | None:
    """queued -> running, atomically; None when the run was cancelled or taken meanwhile."""
    now = utcnow()
    claimed = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "queued", Run.cancel_requested.is_(False))
        .values(
            status="running",
            started_at=now,
            heartbeat_at=now,
            worker_host=worker_host,
            device=device,
            versions=versions,
            attempts=Run.attempts + 1,
            error=None,
            traceback=None,
        )
    ).rowcount
    session.flush()
    return get_run(session, run_id) if claimed else None


def cancel_requested(session: Session, run_id: int) -> bool:
    """Whether someone asked this run to stop."""
    return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def request_cancel(*, session: Session, run_id: int) -> Run:
    """A queued run is cancelled at once; a running one stops at its next batch."""
    run = get_run(session, run_id)
    if run.status in FINISHED:
        raise InvalidRequest("status", f"run {run_id} is {run.status} already")
    run.cancel_requested = True
    if run.status == "queued":
        run.status, run.finished_at = "cancelled", utcnow()
    session.flush()
    return run


def beat(*, session: Session, run_id: int, progress: dict | None = None) -> None:
    """The worker is alive on this run (and, optionally, here is how far it got)."""
    values = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = progress
    session.execute(update(Run).where(Run.id == run_id, Run.status == "running").values(**values))


def finish_run(
    *,
    session: Session,
    run_id: int,
    status: str,
    result: dict | None = None,
    error: str | None = None,
    traceback: str | None = None,
) -> Run:
    """running -> succeeded | failed | cancelled, with what the job produced."""
    assert status in FINISHED, status
    run = get_run(session, run_id)
    run.status, run.finished_at = status, utcnow()
    run.result = result or run.result or {}
    run.error, run.traceback = error, traceback
    if run.progress:
        run.progress = {**run.progress, "eta_seconds": 0.0}
    session.flush()
    return run


def reap_stale(*, session: Session, stale_after: float) -> list[int]:
    """Mark failed every running run whose worker stopped beating; returns their ids."""
    cutoff = utcnow() - timedelta(seconds=stale_after)
    stale = list(
        session.scalars(select(Run.id).where(Run.status == "running", Run.heartbeat_at < cutoff))
    )
    if stale:
        session.execute(
            update(Run)
            .where(Run.id.in_(stale), Run.status == "running")
            .values(
                status="failed",
                finished_at=utcnow(),
                error=f"worker stopped responding (no heartbeat for {stale_after:.0f} s); "
                "it was killed, ran out of memory or lost its machine. Re-queue to run again.",
            )
        )
    return stale


def requeue(*, session: Session, run_id: int) -> Run:
    """A failed or cancelled run back to queued, its old metrics and files cleared."""
    run = get_run(session, run_id)
    if run.status not in ("failed", "cancelled"):
        raise InvalidRequest(
            "status", f"only failed or cancelled runs re-queue; this is {run.status}"
        )
    for model in (Metric, MetricSummary, TuneTrial, Artifact):
        session.execute(delete(model).where(model.run_id == run_id))
    run.status, run.cancel_requested = "queued", False
    run.started_at = run.finished_at = run.heartbeat_at = None
    run.error = run.traceback = None
    run.progress, run.result = {}, {}
    session.flush()
    return run
