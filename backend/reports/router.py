"""JSON API of experiment reports."""

from __future__ import annotations

from fastapi import APIRouter

from backend.conditional import fresh_runs
from backend.deps import SessionDep
from backend.reports import service

router = APIRouter(tags=["experiments"])


@router.get("/experiments/{run_id}", dependencies=[fresh_runs])
def read_experiment(run_id: int, session: SessionDep) -> dict:
    """A pretrain run with its tunes, finetunes (test scores), studies (verdicts) and notes."""
    return service.experiment(session=session, run_id=run_id)
