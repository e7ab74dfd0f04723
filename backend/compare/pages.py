"""HTML pages of the compare domain: compare runs, augmentation studies, the new-run form.

Before editing, read docs/WEB_GUIDE.md (rules for pages: no CDN, escaping, server-built
Plotly figures, polling, downsampling, no TensorFlow/worker imports, test fixtures).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from backend.compare import augmentation
from backend.compare import service as compare_service
from backend.deps import SessionDep
from backend.runs import form
from backend.web import render
from store.datasets import service as datasets_service
from store.errors import InvalidRequest, NotFound
from store.runs import service as runs_service
from store.runs.models import Run

router = APIRouter(include_in_schema=False)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, session: SessionDep, ids: str = ""):
    """Runs side by side; a short explanation (and an id box) when fewer than two are given."""
    try:
        data = compare_service.compare(session=session, ids=compare_service.parse_ids(ids))
    except (InvalidRequest, NotFound) as err:
        status = 200 if not ids.strip() else 404 if isinstance(err, NotFound) else 422
        message = err.reason if isinstance(err, InvalidRequest) else f"{str(err).capitalize()}."
        return render(
            request, "compare.html", status_code=status, nav="compare", problem=message, ids=ids
        )
    return render(request, "compare.html", nav="compare", data=data, ids=ids, problem=None)


@router.get("/groups/{group_id}", response_class=HTMLResponse)
def group_page(request: Request, group_id: int, session: SessionDep):
    """An augmentation study's answer (other groups: their runs)."""
    group = augmentation.get_group(session, group_id)
    if group.kind != "augmentation_study":
        runs = augmentation.group_runs(session, group_id)
        return render(request, "groups/augmentation.html", group=group, runs=runs, data=None)
    data = augmentation.study(session=session, group_id=group_id)
    return render(request, "groups/augmentation.html", group=group, data=data, nav="runs")


@router.get("/runs/new", response_class=HTMLResponse)
def new_run_page(
    request: Request,
    session: SessionDep,
    kind: str | None = None,
    clone: int | None = None,
    parent: int | None = None,
):
    """One form per kind, generated from the job parameter models; clone prefills one."""
    source = runs_service.get_run(session, clone) if clone is not None else None
    kind = kind if kind in form.form_kinds() else (source.kind if source else None)
    kind = kind or ("finetune" if parent is not None else "pretrain")
    values = form.clone_values(source.params, kind) if source else {}
    forms = [
        {
            "kind": k,
            "title": form.kind_title(k),
            "help": form.kind_help(k),
            "fields": form.build_fields(k, values if k == kind else None),
        }
        for k in form.form_kinds()
    ]
    prefill = {
        "name": f"{source.name} (clone)" if source else "",
        "tags": ", ".join(source.tags) if source else "",
        "dataset": datasets_service.get(session, source.dataset_id).name if source else None,
        "parent": parent if parent is not None else (source.parent_run_id if source else None),
    }
    return render(
        request,
        "runs/new.html",
        nav="new",
        kind=kind,
        forms=forms,
        source=source,
        prefill=prefill,
        datasets=datasets_service.list_all(session),
        parents=_parent_choices(session, prefill["parent"]),
    )


def _parent_choices(session, selected: int | None) -> list[Run]:
    """Pretrain runs whose weights can be used now or soon (plus the preselected one)."""
    query = (
        select(Run)
        .where(Run.kind == "pretrain", Run.status.in_(("succeeded", "running")))
        .order_by(Run.id.desc())
        .limit(200)
    )
    runs = list(session.scalars(query))
    if selected is not None and all(run.id != selected for run in runs):
        extra = session.get(Run, selected)
        if extra is not None and extra.kind == "pretrain":
            runs.insert(0, extra)
    return runs
