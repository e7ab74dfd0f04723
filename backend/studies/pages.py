"""The study page of a tune run (trials, best trial and Optuna's plots, updated live) and
the form that launches a pretrain with its settings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from backend.deps import SessionDep
from backend.runs import form
from backend.studies import service as studies_service
from backend.web import render

router = APIRouter(include_in_schema=False)


@router.get("/studies/{run_id}", response_class=HTMLResponse)
def study_page(run_id: int, request: Request, session: SessionDep) -> HTMLResponse:
    """A tune run's study (every worker's part of a parallel tune)."""
    view = studies_service.study_view(session, run_id)
    return render(request, "studies/detail.html", nav="runs", view=view)


@router.get("/studies/{run_id}/pretrain", response_class=HTMLResponse)
def review_pretrain(run_id: int, request: Request, session: SessionDep) -> HTMLResponse:
    """The new-run form, pre-filled with the study's settings, to review before launching."""
    context = studies_service.pretrain_review(session, run_id)
    page = form.page(session, **context)
    return render(request, "runs/new.html", nav="new", **page, **form.priority(request))
