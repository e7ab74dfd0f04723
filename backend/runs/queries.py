"""Read-side queries over runs (list pages, the queue panel)."""

from __future__ import annotations

import heapq
import math
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.runs import eta
from jobspec.status import RunStatus
from store import clock
from store.runs import service as runs_service
from store.runs.models import Run
from store.runs.schemas import RunFilter, RunPage, RunRead
from store.settings import get_settings
from store.timeutil import aware
from store.workers import service as workers_service
from store.workers.models import WorkerRecord


def page(session: Session, *, run_filter: RunFilter, limit: int, offset: int) -> RunPage:
    """One page of runs, newest first, with the total count."""
    query = runs_service.filtered(select(Run), run_filter)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit).offset(offset)
    )
    return RunPage(items=[_listed(r) for r in rows], total=total, limit=limit, offset=offset)


# A list of runs stays small whatever the data sets: per-class detail of a run with more
# classes than this is left to GET /api/runs/{id} (a 1,000-class matrix is ~3 MB of JSON).
LIST_MAX_CLASSES = 40


def _listed(run: Run) -> RunRead:
    item = RunRead.model_validate(run)
    evaluation = (item.result or {}).get("evaluation") or {}
    if len(evaluation.get("class_names") or []) > LIST_MAX_CLASSES:
        short = {k: v for k, v in evaluation.items() if k not in ("confusion_matrix", "per_class")}
        short["detail"] = f"per-class results: GET /api/runs/{run.id}"
        item.result = {**item.result, "evaluation": short}
    return item


# --- The queue panel: who works on what, what waits, and when it should run. ---


def queue_panel(session: Session, *, online_within: float, now: datetime | None = None) -> dict:
    """Workers online, running and queued runs, each run's estimated length, start and finish.

    Lengths come from backend/runs/eta.py (planned images at measured, else default,
    images/s); runs start on whichever online worker frees up first. A run of unknown length
    says "unknown" alone: the times after it leave it out (listed in `leaves_out`, with a
    note) instead of going blank.
    """
    now = now or clock.now(session)  # the clock that stamped starts, sends and beats
    workers = workers_service.online(session, within_seconds=online_within, now=now)
    running = list(
        session.scalars(select(Run).where(Run.status == RunStatus.RUNNING).order_by(Run.started_at))
    )
    queued = list(
        session.scalars(
            select(Run).where(Run.status == RunStatus.QUEUED).order_by(Run.created_at, Run.id)
        )
    )
    names = _names(session, {w.current_run_id for w in workers if w.current_run_id})
    timing = eta.Timing(session, {w.device for w in workers}, running + queued)
    busy = [_running_row(run, timing, now) for run in running]
    unknown = [row["id"] for row in busy if row["eta_seconds"] is None]
    slots = _free_at([row["eta_seconds"] for row in busy], len(workers))
    blocked = _blocked(session, queued, workers, now)
    waiting = []
    for run in queued:
        estimate, source = timing.estimate(run)
        start = finish = None
        if run.id not in blocked and slots:  # a run that cannot start takes no worker's turn
            start = heapq.heappop(slots)
            finish = start + (estimate or 0.0)  # unknown: left out of the times after it
            heapq.heappush(slots, finish)
        waiting.append(
            {
                "id": run.id,
                "name": run.name,
                "kind": run.kind,
                "created_at": aware(run.created_at).isoformat(),
                "waiting": blocked.get(run.id) or _waiting_note(run, workers),
                "blocked": run.id in blocked,
                "estimated_seconds": estimate,
                "estimate_source": source,  # measured | default | None: unknown
                "leaves_out": list(unknown) if start is not None else [],
                "starts_in_seconds": start,
                "finishes_in_seconds": finish if estimate is not None else None,
                "starts_at": _at(now, start),
                "finishes_at": _at(now, finish) if estimate is not None else None,
            }
        )
        if estimate is None and start is not None:
            unknown.append(run.id)
    return {
        "now": now.isoformat(),
        "workers": [
            {
                "name": w.name,
                "host": w.host,
                "device": w.device,
                "current_run_id": w.current_run_id,
                "current_run_name": (
                    None if w.current_run_id is None else names.get(w.current_run_id)
                ),
                "last_seen": aware(w.last_seen).isoformat(),
            }
            for w in workers
        ],
        RunStatus.RUNNING: busy,
        RunStatus.QUEUED: waiting,
        "unknown": unknown,
        "note": _unknown_note(unknown),
    }


def _running_row(run: Run, timing: eta.Timing, now: datetime) -> dict:
    started = aware(run.started_at) if run.started_at else now
    left, source = timing.remaining(run, max((now - started).total_seconds(), 0.0))
    return {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "worker_host": run.worker_host,
        "device": run.device,
        "eta_seconds": left,
        "eta_source": source,  # own epochs | measured | default | None: unknown
        "finishes_at": _at(now, left),
    }


def _unknown_note(unknown: list[int]) -> str:
    if not unknown:
        return ""
    runs = ", ".join(f"#{run_id}" for run_id in unknown)
    return f"Length unknown for run {runs}: the times after it leave it out."


def _blocked(
    session: Session, queued: list[Run], workers: list[WorkerRecord], now: datetime
) -> dict[int, str]:
    """Queued runs that will not start on the next free worker, and why."""
    parents = {r.parent_run_id for r in queued if r.parent_run_id}
    status = (
        dict(session.execute(select(Run.id, Run.status).where(Run.id.in_(parents))).all())
        if parents
        else {}
    )
    settings = get_settings()
    idle = any(w.current_run_id is None for w in workers)
    out = {}
    for run in queued:
        sent = aware(run.sent_at)
        parent = None if run.parent_run_id is None else status.get(run.parent_run_id)
        if parent is not None and parent in RunStatus.active():
            out[run.id] = f"waits for pretrain run #{run.parent_run_id}"
        elif not workers:
            out[run.id] = "no worker online"
        elif sent is None:
            out[run.id] = "not handed to the queue yet: sending"
        elif idle and now - sent > timedelta(seconds=settings.resend_after_seconds):
            out[run.id] = "its queue message seems lost: sending again"
    return out


def _waiting_note(run: Run, workers: list[WorkerRecord]) -> str:
    if run.attempts:
        return f"re-try: attempt {run.attempts + 1} of up to {run.max_attempts}"
    return "in the queue"


def _names(session: Session, run_ids: set[int]) -> dict[int, str]:
    if not run_ids:
        return {}
    return dict(session.execute(select(Run.id, Run.name).where(Run.id.in_(run_ids))).all())


def _free_at(remaining: list[float | None], worker_count: int) -> list[float]:
    """A heap of seconds until each online worker is free (an unknown ETA counts as free
    now, so it blanks nothing; the panel's note says it is left out)."""
    slots = sorted(0.0 if r is None else r for r in remaining)[:worker_count]
    slots += [0.0] * (worker_count - len(slots))
    heapq.heapify(slots)
    return slots


def _finite(seconds: float | None) -> float | None:
    return None if seconds is None or math.isinf(seconds) else seconds


def _at(now: datetime, seconds: float | None) -> str | None:
    seconds = _finite(seconds)
    return (now + timedelta(seconds=seconds)).isoformat() if seconds is not None else None
