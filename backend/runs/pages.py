"""HTML pages of the runs domain: the runs table with its queue panel, one run's page and
the new-run form.

The pages render their first state on the server (escaped by Jinja); small scripts then
poll the JSON API and update them in place while runs progress.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from backend.datasets import listing
from backend.deps import SessionDep, launched_by
from backend.formatting import flatten, readable
from backend.reports import notes
from backend.runs import (
    bulk,
    detail,
    form,
    learned,
    liveness,
    panel,
    partial,
    queries,
    table_csv,
    views,
    welcome,
)
from backend.web import render
from jobspec import kinds
from jobspec.scheduling import PRIORITY_MAX, PRIORITY_MIN
from jobspec.status import AttemptOutcome, RunStatus
from store import clock
from store.artifacts import service as artifacts_service
from store.artifacts.schemas import ArtifactRead
from store.runs import search
from store.runs import service as runs_service
from store.runs.models import Run
from store.runs.schemas import PageFilter, RunFilter, RunRead
from store.settings import get_settings
from store.timeutil import aware

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50


@router.get("/")
def home(session: SessionDep) -> RedirectResponse:
    """The runs table is the home page; a store without any run, or with only the demo's,
    starts at the first-run page (which says what the demo found and what to do next)."""
    return RedirectResponse(welcome.home_path(session), status_code=307)


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    session: SessionDep,
    page_filter: Annotated[PageFilter, Query()],
    sort: str = Query("created", max_length=210),
    order: str = "desc",
    offset: int = Query(0, ge=0, le=views.MAX_OFFSET),
    cursor: str | None = Query(None, max_length=views.MAX_CURSOR_CHARS),
    columns: str | None = Query(None, max_length=12_000),
):
    """Every run, filtered, sorted (by any column) and paged, with the queue panel below."""
    sort = views.known_sort(sort)
    order = "asc" if order == "asc" else "desc"
    filters = page_filter.active()
    value_columns = views.check_columns(columns)
    run_filter, filter_error = page_filter.checked()  # a bad filter: said on the page
    page = views.page_of(
        session,
        run_filter=run_filter or RunFilter(archived="only", filter="id < 0"),
        sort=sort,
        order=order,
        limit=PAGE_SIZE,
        offset=offset,
        cursor=cursor,
        columns=value_columns,
    )
    queue = queries.queue_panel(session, online_within=liveness.listed_within())
    return render(
        request,
        "runs/list.html",
        nav="runs",
        page=page,
        queue=queue,
        filters=filters,
        sort=sort,
        order=order,
        query={
            **filters,
            "sort": sort,
            "order": order,
            "offset": offset,
            "limit": PAGE_SIZE,
            **({"columns": ",".join(value_columns)} if value_columns else {}),
            **({"cursor": cursor} if cursor else {}),
        },
        filter_error=filter_error,
        filter_max=search.MAX_FILTER_CHARS,
        kinds=kinds.names(),
        statuses=list(RunStatus),
        datasets=listing.names(session),
        columns=views.COLUMNS,
        value_columns=value_columns,  # the param./metric. columns shown (row["values"])
        csv_max=table_csv.MAX_ROWS,
        bulk_max=bulk.MAX_IDS,
    )


@router.get("/runs/{run_id:int}", response_class=HTMLResponse)
def run_page(request: Request, run_id: int, session: SessionDep):
    """One run: status, live progress, curves, results, parameters, lineage, downloads."""
    run = runs_service.get_run(session, run_id)
    dataset = listing.by_id(session, run.dataset_id)  # bounded, whatever the row holds
    artifacts = [
        ArtifactRead.model_validate(a)
        for a in artifacts_service.list_run_artifacts(session, run_id)
    ]
    names = {a.name for a in artifacts}
    evaluation = (run.result or {}).get("evaluation") or {}
    lineage = detail.lineage(session, run)
    progress = views.progress_of(run)
    if run.status == RunStatus.SUCCEEDED:  # stopped early at epoch 10 of 15 is done, not 67%
        progress["fraction"] = 1.0
    now = clock.now(session)
    found = liveness.etas(session, [run], now).get(run.id)  # the one ETA, its liveness
    shown = liveness.read(session, run, found, now)
    return render(
        request,
        "runs/detail.html",
        nav="runs",
        run=shown,  # templates get plain objects, never ORM rows
        dataset=dataset,
        row=views.row_of(run, dataset.name, {}, now, eta=found),
        duration=shown.duration_seconds,  # stops where a silent worker was heard
        waiting=panel.waiting_row(session, run.id, now) if run.status == RunStatus.QUEUED else None,
        progress=progress,
        params=[(key, readable(value)) for key, value in flatten(run.params or {}).items()],
        lineage=lineage,
        artifacts=artifacts,
        downloads=[a for a in artifacts if a.name.endswith((".weights.h5", ".keras"))],
        has_confusion=bool(evaluation.get("confusion_matrix")),
        evaluation=evaluation,
        per_class=detail.per_class_page(evaluation),  # a page of a 1,000-class table
        recon_rows=detail.recon_rows(session, run_id) if "reconstructions.npz" in names else [],
        learned=learned.for_page(session, run),  # what the autoencoders learned (pretrains)
        best_epoch=detail.best_epoch(session, run),
        attempts=[_attempt_row(a) for a in runs_service.list_attempts(session, run_id)],
        state={
            "id": run.id,
            "kind": run.kind,
            "features": dataclasses.asdict(kinds.features(run.kind)),
            "status": run.status,
            "attempts": run.attempts,
            "dataset": dataset.name,
            "predictions": "predictions.npz" in names,
        },
        **_readings(run, dataset, lineage),
        **partial.page_state(session, run),  # partial badge, weights warnings
        started=aware(run.started_at),
        priority_ceiling=get_settings().priority_ceiling(launched_by(request)),
        priority_range=(PRIORITY_MIN, PRIORITY_MAX),
    )


def _readings(run, dataset, lineage: dict) -> dict:
    """What the run page says about its result: split, warnings, how training ended,
    reconstruction yardsticks, imbalance-aware scores, notes, its experiment."""
    parent, features = lineage["parent"], kinds.features(run.kind)
    return {
        "split": detail.split_of(run),
        "warnings": detail.warnings_of(run),
        "training": detail.training_state(run),
        "yardsticks": detail.yardsticks(run) if features.reconstructions else None,
        "scores": detail.scores(run, dataset.train_counts or {}),
        "notes_html": notes.render(run.notes),
        "max_notes": get_settings().max_notes_chars,
        "experiment_id": run.id if features.experiment_root else (parent or {}).get("id"),
    }


# A set-aside attempt's note names the run it stepped aside for: "... for run #12 (...".
_FOR_RUN = re.compile(r"^(?P<before>.*?run )#(?P<id>\d+)(?P<after>.*)$", re.DOTALL)


def _attempt_row(attempt) -> dict:
    link = (
        _FOR_RUN.match(attempt.note or "") if attempt.outcome == AttemptOutcome.PREEMPTED else None
    )
    return {
        "note_link": (
            {"before": link["before"], "run_id": int(link["id"]), "after": link["after"]}
            if link
            else None
        ),
        "number": attempt.number,
        "worker_host": attempt.worker_host,
        "started_at": aware(attempt.started_at).isoformat(),
        "ended_at": aware(attempt.ended_at).isoformat() if attempt.ended_at else None,
        "outcome": attempt.outcome,
        "note": attempt.note,
        "resumed_from": attempt.resumed_from,
    }


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
    kind = form.LEGACY_KINDS.get(kind, kind) if kind else kind  # old links: ?kind=augmentation
    kind = kind if kind in form.form_kinds() else (source.kind if source else None)
    kind = kind or form.default_kind(has_parent=parent is not None)
    values = form.clone_values(source.params, kind) if source else {}
    prefill = {
        "name": f"{source.name} (clone)" if source else "",
        "tags": ", ".join(source.tags) if source else "",
        "dataset": listing.by_id(session, source.dataset_id).name if source else None,
        "parent": parent if parent is not None else (source.parent_run_id if source else None),
        "priority": source.priority if source else 0,
    }
    source_read = RunRead.model_validate(source) if source else None
    context = form.page(session, kind=kind, values=values, prefill=prefill, source=source_read)
    return render(request, "runs/new.html", nav="new", **context, **form.priority(request))


# --- The first run, and the site's icon. ---


@router.get("/welcome", response_class=HTMLResponse)
def welcome_page(request: Request, session: SessionDep):
    """The first-run page: what the demo does, about how long it takes, one button."""
    datasets = listing.page(session)
    chosen = next((d for d in datasets if d.name == welcome.DEMO_DATASET), None)
    chosen = chosen or (datasets[0] if datasets else None)
    return render(
        request,
        "runs/welcome.html",
        nav="runs",
        datasets=datasets,
        chosen=chosen.name if chosen else None,
        demo_dataset=welcome.DEMO_DATASET,
        plan=welcome.plan(chosen.n_train if chosen else None),
        has_runs=session.scalar(select(Run.id).limit(1)) is not None,
        demo=welcome.demo_state(session),
    )


@router.get("/favicon.ico")
def favicon() -> RedirectResponse:
    """Browsers ask for /favicon.ico where a page names no icon (JSON, plain files)."""
    return RedirectResponse("/static/favicon.svg", status_code=301)
