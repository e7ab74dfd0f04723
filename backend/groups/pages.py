"""HTML pages of groups: runs launched together (an ablation study and its answer)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from backend.deps import SessionDep
from backend.groups import ablation
from backend.web import render
from jobspec.verdicts import Verdict
from store.runs.schemas import GroupRead, RunRead

router = APIRouter(include_in_schema=False)


@router.get("/groups/{group_id}", response_class=HTMLResponse)
def group_page(request: Request, group_id: int, session: SessionDep):
    """An ablation study's answer (other groups: their runs)."""
    found = ablation.get_group(session, group_id)
    group = GroupRead.model_validate(found)
    if not ablation.is_study(found):
        runs = [RunRead.model_validate(r) for r in ablation.group_runs(session, group_id)]
        return render(request, "groups/group.html", group=group, runs=runs, nav="runs")
    data = ablation.study(session=session, group_id=group_id)
    return render(
        request, "groups/ablation.html", group=group, data=data, nav="runs", Verdict=Verdict
    )
