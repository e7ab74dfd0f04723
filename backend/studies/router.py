"""JSON API of a tune run's study: trials, best trial and Optuna's plots."""

from __future__ import annotations

from fastapi import APIRouter

from backend.conditional import fresh_study
from backend.deps import SessionDep
from backend.studies import service as studies_service

router = APIRouter(tags=["studies"])


@router.get("/studies/{run_id}", dependencies=[fresh_study])
def study_json(run_id: int, session: SessionDep, version: str | None = None) -> dict:
    """Trials, best trial and figures; figures are null when `version` is still current."""
    return studies_service.study_view(session, run_id, known_version=version)
