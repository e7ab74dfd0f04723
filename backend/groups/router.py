"""JSON API of groups: an ablation study's answer, and more seeds for it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from backend import api_errors
from backend.conditional import fresh_runs
from backend.deps import SessionDep, UserDep
from backend.groups import ablation
from store.runs import ablations as ablation_launcher
from store.runs.seeds import MAX_SEEDS_PARSED

router = APIRouter(tags=["groups"])

EffectQuery = Query(
    None,
    gt=0,
    le=100,
    description="The effect in points to size the seed count for (default: the observed one)",
)


class SeedsAdd(BaseModel):
    """How many seeds to add to a study (both arms of each)."""

    model_config = ConfigDict(extra="forbid")

    add: int = Field(
        ...,
        ge=1,
        le=MAX_SEEDS_PARSED,
        strict=True,
        description="New seeds, numbered after the study's highest; the study's seeds in all "
        "are bounded by STACKLAB_MAX_SEEDS",
    )


@router.get("/groups/{group_id}/ablation", dependencies=[fresh_runs])
def ablation_study(group_id: int, session: SessionDep, effect: float | None = EffectQuery) -> dict:
    """Verdict on the pre-registered metric with its seed CI, what it covers, the test-set
    bootstrap beside it, exact power and seeds needed (a range); per-arm metrics (the others
    exploratory), per-seed differences, the per-image tests (McNemar, CMH: not tests of the
    factor), validation curves and the runs."""
    return ablation.study(session=session, group_id=group_id, effect=effect)


@router.post(
    "/groups/{group_id}/seeds",
    status_code=201,
    dependencies=[Depends(api_errors.store_writable)],
)
def add_seeds(group_id: int, seeds_in: SeedsAdd, session: SessionDep, user: UserDep) -> dict:
    """Queue both arms of more seeds for a study: the same split, shared parameters,
    pretrain and priority, seeds after its highest; the verdict takes them in as they finish."""
    runs = ablation_launcher.add_seeds(
        session=session, group_id=group_id, add=seeds_in.add, launched_by=user
    )
    seeds = sorted({ablation_launcher.run_seed(run) for run in runs})
    return {
        "group_id": group_id,
        "seeds": seeds,
        "run_ids": [run.id for run in runs],
        "url": f"/groups/{group_id}",
    }


@router.get("/groups/{group_id}/augmentation", dependencies=[fresh_runs])
def augmentation_study(
    group_id: int, session: SessionDep, effect: float | None = EffectQuery
) -> dict:
    """The same answer as /groups/{id}/ablation (the first study's address, kept)."""
    return ablation.study(session=session, group_id=group_id, effect=effect)
