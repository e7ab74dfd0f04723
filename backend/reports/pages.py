"""HTML pages of experiment reports: the report and its self-contained export."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from backend import exports
from backend.deps import SessionDep
from backend.reports import export, service
from backend.runs import detail
from backend.web import render
from jobspec import kinds
from store.runs import service as runs_service
from store.settings import get_settings

router = APIRouter(include_in_schema=False)


@router.get("/experiments/{run_id:int}", response_class=HTMLResponse)
def experiment_page(request: Request, run_id: int, session: SessionDep):
    """One experiment: the pretrain, its tunes, finetunes, studies and the notes on it.
    A finetune's or tune's id leads to the experiment of its pretrain."""
    run = runs_service.get_run(session, run_id)
    if not kinds.features(run.kind).experiment_root and run.parent_run_id is not None:
        return RedirectResponse(f"/experiments/{run.parent_run_id}", status_code=307)
    data = service.experiment(session=session, run_id=run_id)
    has_recon = detail.has_artifact(session, run_id, "reconstructions.npz")
    return render(
        request,
        "reports/experiment.html",
        nav="runs",
        **export.context(session, data),
        export=False,
        recon_src=f"/api/runs/{run_id}/reconstructions.png" if has_recon else None,
        max_notes=get_settings().max_notes_chars,
        state={"id": run_id, "running": data["running"]},
    )


@router.get("/experiments/{run_id:int}/report.html")
def experiment_export(run_id: int, session: SessionDep) -> Response:
    """The report as one HTML file that opens offline (a download), streamed as it is
    written; 503 while max_concurrent_exports are being written."""
    chunks, name = export.report_chunks(session=session, run_id=run_id)
    headers = exports.attachment(name)  # experiment-<id>-<name>.html: it names its run
    return exports.stream(
        chunks, media_type="text/html; charset=utf-8", headers=headers, slot=exports.take()
    )
