"""JSON API of groups: an augmentation study's answer."""

from __future__ import annotations

from fastapi import APIRouter

from backend.deps import SessionDep
from backend.groups import augmentation

router = APIRouter(tags=["groups"])


@router.get("/groups/{group_id}/augmentation")
def augmentation_study(group_id: int, session: SessionDep) -> dict:
    """Per-arm curves and test metrics, paired difference with CI and t-test, McNemar, verdict."""
    return augmentation.study(session=session, group_id=group_id)
