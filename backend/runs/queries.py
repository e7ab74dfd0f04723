"""Read-side queries over runs (list pages)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.runs.models import Run
from backend.runs.schemas import RunPage, RunRead


def page(
    session: Session,
    *,
    kind: str | None,
    status: str | None,
    group_id: int | None,
    limit: int,
    offset: int,
) -> RunPage:
    """One page of runs, newest first, with the total count."""
    query = select(Run)
    if kind:
        query = query.where(Run.kind == kind)
    if status:
        query = query.where(Run.status == status)
    if group_id is not None:
        query = query.where(Run.group_id == group_id)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit).offset(offset)
    )
    return RunPage(
        items=[RunRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )
