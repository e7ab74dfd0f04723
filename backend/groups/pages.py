"""HTML pages of groups: runs launched together (an augmentation study and its answer)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from backend.deps import SessionDep
from backend.groups import augmentation
from backend.web import render
from store.runs.schemas import GroupRead, RunRead

router = APIRouter(include_in_schema=False)


@router.get("/groups/{group_id}", response_class=HTMLResponse)
def group_page(request: Request, group_id: int, session: SessionDep):
    """An augmentation study's answer (other groups: their runs)."""
    group = GroupRead.model_validate(augmentation.get_group(session, group_id))
    if group.kind != "augmentation_study":
        runs = [RunRead.model_validate(r) for r in augmentation.group_runs(session, group_id)]
        return render(request, "groups/augmentation.html", group=group, runs=runs, data=None)
    data = augmentation.study(session=session, group_id=group_id)
    return render(request, "groups/augmentation.html", group=group, data=data, nav="runs")
