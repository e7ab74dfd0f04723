"""JSON API of the compare pages: run comparison and augmentation-study answers."""

from __future__ import annotations

from fastapi import APIRouter

from backend.compare import augmentation
from backend.compare import service as compare_service
from backend.deps import SessionDep

router = APIRouter(tags=["compare"])


@router.get("/compare")
def compare_runs(session: SessionDep, ids: str = "") -> dict:
    """Curves, parameters (differences flagged), metrics and confusion matrices of 2+ runs."""
    return compare_service.compare(session=session, ids=compare_service.parse_ids(ids))


@router.get("/groups/{group_id}/augmentation")
def augmentation_study(group_id: int, session: SessionDep) -> dict:
    """Per-arm curves and test metrics, paired difference with CI and t-test, McNemar, verdict."""
    return augmentation.study(session=session, group_id=group_id)
