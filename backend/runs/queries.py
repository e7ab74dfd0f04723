"""Read-side queries over runs (list pages, the queue panel)."""

from __future__ import annotations

import heapq
import math
import statistics
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from jobspec import kinds
from store.runs import service as runs_service
from store.runs.models import Metric, Run
from store.runs.schemas import RunFilter, RunPage, RunRead
from store.settings import get_settings
from store.timeutil import aware, utcnow
from store.workers import service as workers_service


def page(session: Session, *, run_filter: RunFilter, limit: int, offset: int) -> RunPage:
    """One page of runs, newest first, with the total count."""
    query = runs_service.filtered(select(Run), run_filter)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
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

RECENT_RUNS_FOR_TIMING = 20
EPOCH_SECONDS = "%/epoch_seconds"


def queue_panel(session: Session, *, online_within: float, now: datetime | None = None) -> dict:
    """Workers online, running and queued runs, each queued run's estimated start and finish.

    A queued run's length is its planned epochs x the median epoch time of recent finished
    runs of the same kind and data set; runs start on whichever online worker frees up
    first, the running ones freeing theirs after their own progress ETA.
    """
    now = now or utcnow()
    workers = workers_service.online(session, within_seconds=online_within)
    running = list(
        session.scalars(select(Run).where(Run.status == "running").order_by(Run.started_at))
    )
    queued = list(
        session.scalars(select(Run).where(Run.status == "queued").order_by(Run.created_at, Run.id))
    )
    names = _names(session, {w.current_run_id for w in workers if w.current_run_id})
    medians = _epoch_medians(session, {(r.kind, r.dataset_id) for r in queued})
    slots = _free_at([_remaining(r) for r in running], len(workers))
    blocked = _blocked(session, queued, workers, now)
    waiting = []
    for run in queued:
        estimate = _estimate(run, medians.get((run.kind, run.dataset_id), {}))
        start = math.inf
        if run.id not in blocked:  # a run that cannot start now takes no worker's turn
            start = heapq.heappop(slots) if slots else math.inf
        finish = start + estimate if estimate is not None else math.inf
        if workers and run.id not in blocked:
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
                "starts_in_seconds": _finite(start),
                "finishes_in_seconds": _finite(finish),
                "starts_at": _at(now, start),
                "finishes_at": _at(now, finish),
            }
        )
    return {
        "now": now.isoformat(),
        "workers": [
            {
                "name": w.name,
                "host": w.host,
                "device": w.device,
                "current_run_id": w.current_run_id,
                "current_run_name": names.get(w.current_run_id),
                "last_seen": aware(w.last_seen).isoformat(),
            }
            for w in workers
        ],
        "running": [
            {
                "id": r.id,
                "name": r.name,
                "kind": r.kind,
                "worker_host": r.worker_host,
                "device": r.device,
                "eta_seconds": _remaining(r),
                "finishes_at": _at(now, _remaining(r)),
            }
            for r in running
        ],
        "queued": waiting,
    }


def _blocked(session: Session, queued: list[Run], workers, now: datetime) -> dict[int, str]:
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
        if status.get(run.parent_run_id) in ("queued", "running"):
            out[run.id] = f"waits for pretrain run #{run.parent_run_id}"
        elif not workers:
            out[run.id] = "no worker online"
        elif sent is None:
            out[run.id] = "not handed to the queue yet: sending"
        elif idle and now - sent > timedelta(seconds=settings.resend_after_seconds):
            out[run.id] = "its queue message seems lost: sending again"
    return out


def _waiting_note(run: Run, workers) -> str:
    if run.attempts:
        return f"re-try: attempt {run.attempts + 1} of up to {run.max_attempts}"
    return "in the queue"


def _names(session: Session, run_ids: set[int]) -> dict[int, str]:
    if not run_ids:
        return {}
    return dict(session.execute(select(Run.id, Run.name).where(Run.id.in_(run_ids))).all())


def _remaining(run: Run) -> float | None:
    eta = (run.progress or {}).get("eta_seconds")
    return float(eta) if eta is not None else None


def _free_at(remaining: list[float | None], worker_count: int) -> list[float]:
    """A heap of seconds until each online worker is free (unknown ETA: never, for planning)."""
    slots = sorted(math.inf if r is None else r for r in remaining)[:worker_count]
    slots += [0.0] * (worker_count - len(slots))
    heapq.heapify(slots)
    return slots


def _epoch_medians(session: Session, groups: set[tuple[str, int]]) -> dict:
    """{(kind, dataset_id): {stage: median epoch seconds}} from recent succeeded runs."""
    out: dict = {}
    for kind, dataset_id in groups:
        recent = (
            select(Run.id)
            .where(Run.kind == kind, Run.dataset_id == dataset_id, Run.status == "succeeded")
            .where(exists().where(Metric.run_id == Run.id, Metric.key.like(EPOCH_SECONDS)))
            .order_by(Run.finished_at.desc())
            .limit(RECENT_RUNS_FOR_TIMING)
        )
        rows = session.execute(
            select(Metric.key, Metric.value).where(
                Metric.run_id.in_(recent.scalar_subquery()), Metric.key.like(EPOCH_SECONDS)
            )
        )
        by_stage: dict[str, list[float]] = {}
        for key, value in rows:
            stage = key.rsplit("/", 1)[0]
            trial = stage.startswith(f"{kinds.TRIAL_STAGE}-")
            by_stage.setdefault(kinds.TRIAL_STAGE if trial else stage, []).append(value)
        out[(kind, dataset_id)] = {s: statistics.median(v) for s, v in by_stage.items()}
    return out


def _estimate(run: Run, medians: dict[str, float]) -> float | None:
    """Planned epochs x median epoch seconds, per stage; None without any measurement."""
    plan = kinds.get(run.kind).stage_plan(run.params) if run.kind in kinds.names() else {}
    if not medians:
        return None
    fallback = statistics.median(medians.values())
    return float(sum(epochs * medians.get(stage, fallback) for stage, epochs in plan.items()))


def _finite(seconds: float | None) -> float | None:
    return None if seconds is None or math.isinf(seconds) else seconds


def _at(now: datetime, seconds: float | None) -> str | None:
    seconds = _finite(seconds)
    return (now + timedelta(seconds=seconds)).isoformat() if seconds is not None else None
