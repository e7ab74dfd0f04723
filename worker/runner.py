"""Run one stored run: claim it, fetch its inputs, call the training core, store the outcome."""

from __future__ import annotations

import logging
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from backend.artifacts import service as artifacts_service
from backend.config import get_settings
from backend.db import session_scope
from backend.errors import NotFound
from backend.runs import service as runs_service
from worker import device, liveness
from worker.datasets import load_from_store
from worker.recorder import StoreRecorder

log = logging.getLogger(__name__)
PARENT_FILES = ("pretrain.json", "ae01.weights.h5", "ae02.weights.h5", "ae03.weights.h5")
NOT_STORED = {"study.db"}


class ParentNotReady(Exception):
    """The pretrain run this run needs has not finished yet: try again later."""


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to know of a claimed run (no ORM object leaves the session)."""

    id: int
    kind: str
    params: dict
    dataset_id: int
    parent_run_id: int | None
    study_name: str | None


def execute(run_id: int) -> str:
    """Run it if it is still queued; returns the final status (or why it was skipped)."""
    with session_scope() as session:
        try:
            run = runs_service.get_run(session, run_id)
        except NotFound:
            return "skipped: no such run"
        if run.status != "queued" or run.cancel_requested:
            return f"skipped: {run.status}"
        _check_parent(session, run)
        claimed = runs_service.claim_run(
            session=session,
            run_id=run_id,
            worker_host=device.worker_name(),
            device=device.describe(),
            versions=device.versions(),
        )
        if claimed is None:
            return "skipped: taken or cancelled meanwhile"
        spec = RunSpec(
            run.id, run.kind, dict(run.params), run.dataset_id, run.parent_run_id, run.study_name
        )
    with liveness.Heartbeat(run_id, worker=device.worker_name(), device=device.describe()):
        return _run_claimed(spec)


def _check_parent(session, run) -> None:
    if run.parent_run_id is None:
        return
    parent = runs_service.get_run(session, run.parent_run_id)
    if parent.status in ("queued", "running"):
        raise ParentNotReady(f"pretrain run {parent.id} is {parent.status}")


def _run_claimed(spec: RunSpec) -> str:
    settings = get_settings()
    try:
        with tempfile.TemporaryDirectory(prefix=f"stacklab-run{spec.id}-") as tmp:
            recorder = StoreRecorder(
                spec.id,
                progress_interval=settings.progress_interval_seconds,
                stage_plan=_stage_plan(spec),
            )
            status, result, files = _call_job(spec, Path(tmp), recorder, settings)
            with session_scope() as session:
                for path in files:
                    if path.exists() and path.name not in NOT_STORED:
                        artifacts_service.store_file(session=session, path=path, run_id=spec.id)
                runs_service.finish_run(
                    session=session, run_id=spec.id, status=status, result=result
                )
            return status
    except Exception as err:
        log.exception("run %s failed", spec.id)
        with session_scope() as session:
            runs_service.finish_run(
                session=session,
                run_id=spec.id,
                status="failed",
                error=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(),
            )
        return "failed"
    finally:
        from worker.ml.training import release_memory

        release_memory()


def _stage_plan(spec: RunSpec) -> dict[str, int]:
    if spec.kind == "pretrain":
        return {s: spec.params.get(s, {}).get("epochs", 10) for s in ("ae01", "ae02", "ae03")}
    return {}


def _fetch_parent(parent_run_id: int, cache_dir: Path) -> Path:
    """The parent pretrain run's manifest and weights, in the local cache."""
    target = cache_dir / "runs" / str(parent_run_id)
    with session_scope() as session:
        for name in PARENT_FILES:
            if (target / name).exists():
                continue
            try:
                artifact = artifacts_service.run_artifact(session, parent_run_id, name)
            except NotFound:
                continue  # a stage the parent did not train; the job says so if it needs it
            artifacts_service.write_to(session, artifact, target / name)
    return target


def _call_job(spec: RunSpec, out_dir: Path, recorder: StoreRecorder, settings):
    from worker import jobs

    dataset = load_from_store(spec.dataset_id, settings.cache_dir)
    parent_dir = (
        _fetch_parent(spec.parent_run_id, settings.cache_dir) if spec.parent_run_id else None
    )
    return jobs.run(
        spec.kind,
        spec.params,
        dataset=dataset,
        out_dir=out_dir,
        recorder=recorder,
        parent_dir=parent_dir,
        study_name=spec.study_name,
        storage_url=settings.sqlalchemy_url,
    )
