"""A run's life as users drive it: created queued, sent, cancelled, re-queued.

What workers write for a run (claim, progress, metrics, finish) goes through
`store.runs.attempts`, where every write is fenced by the attempt that makes it.
"""

from __future__ import annotations

import json

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from store.datasets.models import DatasetRecord
from store.errors import InvalidRequest, NotFound
from store.runs.models import FINISHED, TRANSITIONS, Run, RunAttempt
from store.runs.schemas import RunFilter
from store.timeutil import utcnow


def create_run(*, session: Session, **fields) -> Run:
    """A new queued run (committed by the caller before it is enqueued)."""
    max_attempts = (fields.get("params") or {}).get("runtime", {}).get("max_attempts", 2)
    run = Run(
        status="queued",
        queued_at=utcnow(),
        max_attempts=max_attempts,
        retries_left=max_attempts - 1,
        **fields,
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> Run:
    """A run by id, or NotFound."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound("run", run_id)
    return run


def check_transition(run: Run, new_status: str) -> None:
    """InvalidRequest unless the status may move from where it is to new_status."""
    if new_status not in TRANSITIONS[run.status]:
        raise InvalidRequest(
            "status", f"run {run.id} is {run.status}: it cannot become {new_status}"
        )


def mark_sent(*, session: Session, run_id: int, task_id: str) -> None:
    """The run's task message went out now (the reconciler re-sends what never arrives)."""
    run = get_run(session, run_id)
    run.task_id, run.sent_at = task_id, utcnow()
    session.flush()


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


def requeue(*, session: Session, run_id: int, fresh: bool = False) -> Run:
    """A failed or cancelled run back to queued. Nothing is deleted here: the next attempt
    resumes from the run's checkpoint, or (fresh, or no checkpoint) clears the old metrics
    and files itself once a worker has claimed it."""
    run = get_run(session, run_id)
    if run.status not in ("failed", "cancelled"):
        raise InvalidRequest(
            "status", f"only failed or cancelled runs re-queue; this is {run.status}"
        )
    check_transition(run, "queued")
    run.status, run.cancel_requested, run.fresh_start = "queued", False, fresh
    run.queued_at, run.sent_at = utcnow(), None
    run.finished_at = run.heartbeat_at = None
    run.error = run.traceback = None
    run.retries_left = max(run.max_attempts - 1, 0)
    session.flush()
    return run


def list_attempts(session: Session, run_id: int) -> list[RunAttempt]:
    """A run's attempts, first to last."""
    return list(
        session.scalars(
            select(RunAttempt).where(RunAttempt.run_id == run_id).order_by(RunAttempt.number)
        )
    )


def parent_choices(*, session: Session, selected: int | None) -> list[Run]:
    """Pretrain runs whose weights can be used now or soon (plus the preselected one)."""
    query = (
        select(Run)
        .where(Run.kind == "pretrain", Run.status.in_(("succeeded", "running")))
        .order_by(Run.id.desc())
        .limit(200)
    )
    runs = list(session.scalars(query))
    if selected is not None and all(run.id != selected for run in runs):
        extra = session.get(Run, selected)
        if extra is not None and extra.kind == "pretrain":
            runs.insert(0, extra)
    return runs


def filtered(query, run_filter: RunFilter):
    """`query` (over Run) narrowed to the runs `run_filter` asks for."""
    f = run_filter
    if f.kind:
        query = query.where(Run.kind == f.kind)
    if f.status:
        query = query.where(Run.status == f.status)
    if f.group_id is not None:
        query = query.where(Run.group_id == f.group_id)
    if f.dataset:
        named = select(DatasetRecord.id).where(DatasetRecord.name == f.dataset)
        query = query.where(Run.dataset_id.in_(named))
    if f.q:
        query = query.where(func.lower(Run.name).contains(f.q.lower(), autoescape=True))
    if f.tag:
        # Tags are a JSON list; its text holds each tag JSON-quoted on every backend.
        query = query.where(cast(Run.tags, String).contains(json.dumps(f.tag), autoescape=True))
    return query
