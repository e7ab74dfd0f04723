"""Read-side queries over runs (list pages, the queue panel)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.runs import panel
from store.runs import service as runs_service
from store.runs.models import Run
from store.runs.schemas import RunFilter, RunPage, RunRead


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


# --- The queue panel: backend/runs/panel.py (kept here for its callers). ---


def queue_panel(session: Session, *, online_within: float, now: datetime | None = None) -> dict:
    """Workers, running and queued runs in the scheduler's order, imports (panel.py)."""
    return panel.queue_panel(session, online_within=online_within, now=now)
