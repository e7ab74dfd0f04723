"""JSON API for runs: launch, list, read, cancel, re-queue, clone, metrics, files."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from backend import api_errors, exports
from backend.api_responses import Refusal
from backend.conditional import fresh_run, fresh_runs
from backend.deps import SessionDep, UserDep
from backend.reports import errors, notes
from backend.reports.schemas import RunEdit, RunEdited
from backend.runs import bulk, detail, liveness, partial, queries, table_csv, views, welcome
from jobspec.scheduling import PRIORITY_MAX, PRIORITY_MIN
from store.artifacts import service as artifacts_service
from store.db import session_scope
from store.runs import ablations as ablation_launcher
from store.runs import launch as launcher
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.schemas import (
    PRIORITY_HELP,
    AblationCreate,
    AttemptRead,
    AugmentationStudyCreate,
    RequeueBody,
    RunCreate,
    RunFilter,
    RunPage,
    RunRead,
)

router = APIRouter(tags=["runs"])
# Launches are refused, naming the cause, while the store cannot write (a full disk).
WRITABLE = [Depends(api_errors.store_writable)]
CSV = "text/csv; charset=utf-8"


@router.post("/runs", status_code=201, response_model=list[RunRead], dependencies=WRITABLE)
def create_runs(run_in: RunCreate, session: SessionDep, user: UserDep):
    """Validate and queue a run (a tune with parallel > 1 queues one run per worker)."""
    return launcher.launch(session=session, run_in=run_in, launched_by=user)


@router.post("/ablations", status_code=201, dependencies=WRITABLE)
def create_ablation(study_in: AblationCreate, session: SessionDep, user: UserDep) -> dict:
    """Queue a factor's two arms for each seed as one group (an ablation study); every
    other setting shared, one train/validation split for all seeds."""
    group = ablation_launcher.launch_ablation(session=session, study_in=study_in, launched_by=user)
    return _group_created(group)


@router.post("/augmentation-studies", status_code=201, dependencies=WRITABLE)
def create_augmentation_study(
    study_in: AugmentationStudyCreate, session: SessionDep, user: UserDep
) -> dict:
    """The augmentation ablation (kept for its callers; POST /api/ablations does every factor)."""
    group = ablation_launcher.launch_augmentation_study(
        session=session, study_in=study_in, launched_by=user
    )
    return _group_created(group)


def _group_created(group) -> dict:
    return {
        "group_id": group.id,
        "name": group.name,
        "url": f"/groups/{group.id}",
        "warnings": (group.params or {}).get("warnings", []),
    }


@router.get("/runs", response_model=RunPage)
def list_runs(
    session: SessionDep,
    run_filter: Annotated[RunFilter, Query()],
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
):
    """Runs, newest first, filtered."""
    return queries.page(session, run_filter=run_filter, limit=limit, offset=offset)


SORT_HELP = "Any column key: a built-in one, param.<name> or metric.<key>"
COLUMNS_HELP = "param./metric. columns to add to each row's `values` (comma-separated)"


@router.get("/runs/table", dependencies=[fresh_runs])
def runs_table(
    session: SessionDep,
    run_filter: Annotated[RunFilter, Query()],
    sort: str = Query("created", max_length=210, description=SORT_HELP),
    order: Literal["asc", "desc"] = "desc",
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=views.MAX_OFFSET),
    cursor: str | None = Query(
        None, max_length=views.MAX_CURSOR_CHARS, description="`next_cursor` of the last page"
    ),
    columns: str | None = Query(None, max_length=12_000, description=COLUMNS_HELP),
) -> dict:
    """Rows of the runs page (the same filters and `filter` language): data set, key
    params, best score and epoch, duration, progress, and `values` of the param./metric.
    columns asked for; sorted by any column; `next_cursor` pages on (keyset; `offset`
    still works). `total` counts up to 1,000 (`total_is_lower_bound`: more match)."""
    return views.table(
        session,
        run_filter=run_filter,
        sort=sort,
        order=order,
        limit=limit,
        offset=offset,
        cursor=cursor,
        columns=views.check_columns(columns),
    )


@router.get("/runs/columns")
def runs_columns(session: SessionDep) -> dict:
    """Every column the runs table can show and sort by: the built-in ones, each job
    parameter (`param.<name>`) and each metric (`metric.<key>`) the store holds, up to
    `max_per_group` of each."""
    return views.catalogue(session)


# Declared before GET /runs/{run_id}, which would otherwise take "table.csv" for an id.
@router.get("/runs/table.csv", response_class=Response, responses=exports.answers("text/csv"))
def runs_table_csv(
    session: SessionDep,
    run_filter: Annotated[RunFilter, Query()],
    sort: str = Query("created", max_length=210, description=SORT_HELP),
    order: Literal["asc", "desc"] = "desc",
) -> Response:
    """Every run of the runs table (the same filters and order, not just one page) as CSV,
    up to 10,000 runs, one column per parameter and per metric (`param.<name>`,
    `metric.<key>`); text that would run as a spreadsheet formula starts with an '.
    Streamed a batch of runs at a time; 503 while max_concurrent_exports are being written."""
    export = table_csv.check(session, run_filter=run_filter, sort=sort, order=order)
    headers = exports.attachment(exports.download_name("runs.csv"))
    return exports.stream(
        table_csv.chunks(export), media_type=CSV, headers=headers, slot=exports.take()
    )


@router.get("/queue", dependencies=[fresh_runs])
def queue_panel(session: SessionDep) -> dict:
    """Workers online, running and queued runs, and when each queued run should start and end."""
    return queries.queue_panel(session, online_within=liveness.listed_within())


@router.get("/runs/{run_id}", response_model=RunRead, dependencies=[fresh_run])
def read_run(run_id: int, session: SessionDep):
    """One run with its progress and result; a running run's ETA and its worker's last
    heartbeat (the same figures as the queue panel and the runs table)."""
    return liveness.read(session, runs_service.get_run(session, run_id))


@router.post("/runs/{run_id}/cancel", response_model=RunRead)
def cancel_run(run_id: int, session: SessionDep):
    """Cancel a queued run, or stop a running one at its next batch."""
    return launcher.cancel(session=session, run_id=run_id)


@router.post("/runs/{run_id}/requeue", response_model=RunRead)
def requeue_run(
    run_id: int,
    session: SessionDep,
    user: UserDep,
    fresh: bool = Query(False, description="Start over instead of resuming from the checkpoint"),
    priority: int | None = Query(None, ge=PRIORITY_MIN, le=PRIORITY_MAX, description=PRIORITY_HELP),
    body: RequeueBody | None = Body(None),
):
    """Queue a failed or cancelled run again: it resumes from its last checkpoint. It keeps
    its priority unless one is given (in the body or the query; the body's wins)."""
    if body is not None and body.priority is not None:
        priority = body.priority
    return launcher.requeue(
        session=session, run_id=run_id, fresh=fresh, priority=priority, requested_by=user
    )


@router.get("/runs/{run_id}/attempts", response_model=list[AttemptRead])
def run_attempts(run_id: int, session: SessionDep):
    """Every try at the run: worker, times, how it ended, where it resumed from."""
    runs_service.get_run(session, run_id)
    return runs_service.list_attempts(session, run_id)


@router.post("/runs/{run_id}/clone", status_code=201, response_model=RunRead, dependencies=WRITABLE)
def clone_run(run_id: int, session: SessionDep, user: UserDep, edits: dict | None = None):
    """A new run like this one, with the given changes (params, name, tags, parent)."""
    return launcher.clone(session=session, run_id=run_id, edits=edits, launched_by=user)


@router.get("/runs/{run_id}/metrics")
def run_metrics(run_id: int, session: SessionDep) -> dict:
    """Every metric series and its latest/best summary."""
    runs_service.get_run(session, run_id)
    return {
        "series": metrics_service.series(session, run_id),
        "summary": metrics_service.summaries(session, run_id),
    }


@router.get("/runs/{run_id}/artifacts")
def run_artifacts(run_id: int, session: SessionDep) -> list[dict]:
    """The run's files: name, kind, size, sha256."""
    runs_service.get_run(session, run_id)
    return [
        {"id": a.id, "name": a.name, "kind": a.kind, "size": a.size, "sha256": a.sha256}
        for a in artifacts_service.list_run_artifacts(session, run_id)
    ]


@router.get(
    "/runs/{run_id}/artifacts/{name}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {"schema": {}}}}},
)
def download_artifact(run_id: int, name: str, session: SessionDep) -> StreamingResponse:
    """Stream one file of the run, chunk by chunk, straight from the database."""
    artifact = artifacts_service.run_artifact(session, run_id, name)
    kind = runs_service.get_run(session, run_id).kind

    def body():
        with session_scope() as stream_session:  # the request's session closes before this ends
            yield from artifacts_service.iter_chunks(stream_session, artifact.id)

    headers = {
        **exports.attachment(exports.download_name(artifact.name, run_id=run_id, run_kind=kind)),
        "Content-Length": str(artifact.size),
        "X-Checksum-SHA256": artifact.sha256 or "",
    }
    return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)


@router.get("/runs/{run_id}/curves", dependencies=[fresh_run])
def run_curves(
    run_id: int,
    session: SessionDep,
    max_points: int = Query(500, ge=10, le=5000),
    hide: str = Query("", max_length=2000, description="Panel keys left out: ae01/loss,..."),
):
    """Loss and accuracy curves as a Plotly figure, each series shortened to max_points,
    without the `hide` panels (`panels`: all it can draw), and the system chart (the
    worker's samples against seconds) beside them."""
    return detail.curves(session, run_id, max_points, detail.hidden_panels(hide))


@router.get("/runs/{run_id}/samples", dependencies=[fresh_run])
def run_samples(
    run_id: int,
    session: SessionDep,
    max_points: int | None = Query(None, ge=10, le=100_000, description="Shorten each series"),
) -> dict:
    """The worker's samples (memory, CPU, GPU) as time series: x = seconds since the run
    started, never epochs; each reading names its attempt."""
    return detail.samples(session, run_id, max_points)


@router.get("/runs/{run_id}/confusion")
def run_confusion(
    run_id: int,
    session: SessionDep,
    per_class_offset: int = Query(0, ge=0, description="First class of the per-class scores"),
    per_class_limit: int = Query(detail.PER_CLASS_ROWS, ge=1, le=1000),
) -> dict:
    """A finetune run's confusion matrix as a Plotly heatmap (the classes with the most
    errors when there are many), with per-class scores a page of classes at a time
    (`per_class_total`: how many classes)."""
    return detail.confusion(session, run_id, per_class_offset, per_class_limit)


@router.get(
    "/runs/{run_id}/reconstructions.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {"schema": {}}}}},
)
def run_reconstructions(run_id: int, session: SessionDep) -> Response:
    """Probe images (top row) and each autoencoder's output below, as one PNG."""
    png, sha = detail.reconstructions(session, run_id)
    return Response(png, media_type="image/png", headers={"ETag": f'"{sha}"'})


@router.get(
    "/runs/{run_id}/metrics.csv", response_class=Response, responses=exports.answers("text/csv")
)
def run_metrics_csv(run_id: int, session: SessionDep) -> Response:
    """Every epoch of every stage, one row each, a column per metric (streamed a batch of
    epochs at a time; 503 while max_concurrent_exports are being written)."""
    names = detail.metrics_csv_columns(session, run_id)
    kind = runs_service.get_run(session, run_id).kind
    headers = exports.attachment(exports.download_name("metrics.csv", run_id=run_id, run_kind=kind))
    chunks = detail.metrics_csv_chunks(run_id, names)
    return exports.stream(chunks, media_type=CSV, headers=headers, slot=exports.take())


@router.get("/runs/{run_id}/metrics.json")
def run_metrics_json(run_id: int, session: SessionDep) -> dict:
    """Every series as steps and values, plus the latest/best summaries."""
    return detail.metrics_json(session, run_id)


# --- Notes and labels, and looking at a finetune's errors (backend/reports). ---


@router.patch(
    "/runs/{run_id}",
    response_model=RunEdited,
    responses={409: {"model": Refusal, "description": "A priority for a run no longer queued"}},
)
def edit_run(run_id: int, edit: RunEdit, session: SessionDep, user: UserDep) -> dict:
    """Change a run's notes (markdown), name, tags or, while it is queued, its priority
    (409 once it has started); fields left out stay as they are. All or nothing."""
    try:
        run = notes.edit_run(session=session, run_id=run_id, edit=edit, requested_by=user)
    except runs_service.NotQueued as err:
        raise HTTPException(409, detail=err.reason) from err
    return {**RunRead.model_validate(run).model_dump(), "notes_html": str(notes.render(run.notes))}


@router.get("/runs/{run_id}/errors")
def run_errors(
    run_id: int,
    session: SessionDep,
    true: int = Query(..., ge=0, description="True class (a confusion-matrix row)"),
    pred: int = Query(..., ge=0, description="Predicted class (a column)"),
    limit: int = Query(errors.CELL_PAGE, ge=1, le=errors.MAX_CELL_PAGE),
    offset: int = Query(0, ge=0, le=errors.MAX_OFFSET, description="First image of the page"),
) -> dict:
    """The test images of one confusion-matrix cell, most confident first, with their
    predicted probabilities, a page of `limit` from `offset` (`total`: how many the cell
    holds; images: /api/datasets/{name}/test-images/{index}.png)."""
    return errors.cell(
        session=session, run_id=run_id, true=true, pred=pred, limit=limit, offset=offset
    )


@router.get("/runs/{run_id}/mistakes")
def run_mistakes(run_id: int, session: SessionDep, per_class: int = Query(5, ge=1, le=20)) -> dict:
    """Per true class, the finetune's most confident mistakes on the test set."""
    return errors.mistakes(session=session, run_id=run_id, per_class=per_class)


# --- Partial runs (cancelled or failed mid-training) and live reconstructions. ---


@router.get("/runs/{run_id}/partial", dependencies=[fresh_run])
def run_partial(run_id: int, session: SessionDep) -> dict:
    """Where a cancelled or failed run stopped (null: it is not partial), the epoch its
    weights come from, its evaluation (if any) and whether "evaluate now" applies."""
    return partial.state(session, runs_service.get_run(session, run_id))


@router.post("/runs/{run_id}/evaluate", status_code=202)
def evaluate_run(run_id: int, session: SessionDep):
    """Score a cancelled or failed finetune's stored classifier on the test split now (a
    worker task); the run's status stays as it is and its result gains "evaluation" marked
    "partial". An already evaluated run answers 200 with its evaluation; while one is queued,
    another request queues nothing and answers 202 with it (`already_queued`: true)."""
    answer = partial.request_evaluation(session=session, run_id=run_id)
    return answer if answer["queued"] else JSONResponse(answer, status_code=200)


@router.get("/runs/{run_id}/reconstructions")
def run_reconstruction_rows(run_id: int, session: SessionDep) -> dict:
    """The stages reconstructed so far (a pretrain stores them as each stage ends) and the
    grid's address, versioned so a browser fetches each new one."""
    return detail.reconstruction_info(session, run_id)


# --- The runs table's actions on ticked runs, and the first run's demo. ---


@router.post("/runs/bulk")
def bulk_action(request: bulk.BulkRequest, session: SessionDep) -> dict:
    """One action on many runs (cancel, tag, untag, archive, unarchive, delete), each run's
    outcome reported: a run the action cannot apply to is refused with the reason, the
    others are done. Deleting is one transaction: a run goes with all its rows or not at all."""
    return bulk.apply(session=session, request=request)


@router.post("/demo", status_code=201)
def launch_demo(demo_in: welcome.DemoCreate, session: SessionDep, user: UserDep) -> dict:
    """The first-run demo: a quick pretrain on the demo data set, then an augmentation
    ablation study on its encoder (2 seeds), queued at once (the study waits for the pretrain)."""
    return welcome.launch(session=session, demo_in=demo_in, launched_by=user)
