"""JSON API of groups: an ablation study's answer."""

from __future__ import annotations

from fastapi import APIRouter, Query

from backend.conditional import fresh_runs
from backend.deps import SessionDep
from backend.groups import ablation

router = APIRouter(tags=["groups"])

EffectQuery = Query(
    None,
    gt=0,
    le=100,
    description="The effect in points to size the seed count for (default: the observed one)",
)


@router.get("/groups/{group_id}/ablation", dependencies=[fresh_runs])
def ablation_study(group_id: int, session: SessionDep, effect: float | None = EffectQuery) -> dict:
    """Verdict with CI, detectable effect and seeds needed; per-arm metrics, per-seed
    differences with McNemar, pooled tests, validation curves and the runs."""
    return ablation.study(session=session, group_id=group_id, effect=effect)


@router.get("/groups/{group_id}/augmentation", dependencies=[fresh_runs])
def augmentation_study(
    group_id: int, session: SessionDep, effect: float | None = EffectQuery
) -> dict:
    """The same answer as /groups/{id}/ablation (the first study's address, kept)."""
    return ablation.study(session=session, group_id=group_id, effect=effect)
