"""JSON API of the compare page: runs side by side."""

from __future__ import annotations

from fastapi import APIRouter

from backend.compare import service as compare_service
from backend.conditional import fresh_runs
from backend.deps import SessionDep

router = APIRouter(tags=["compare"])


@router.get("/compare", dependencies=[fresh_runs])
def compare_runs(session: SessionDep, ids: str = "") -> dict:
    """Curves, parameters (differences flagged), metrics and confusion matrices of 2+ runs."""
    return compare_service.compare(session=session, ids=compare_service.parse_ids(ids))
