"""What one run's page reads: curves, confusion matrix, reconstructions, metric exports, lineage."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.runs import figures
from store.artifacts import service as artifacts_service
from store.errors import NotFound
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.models import Run, RunGroup

MAX_NPZ_BYTES = 64 * 1024 * 1024  # probe images are a few hundred KiB; refuse anything odd


def best_epoch(session: Session, run: Run) -> int | None:
    """Early stopping's pick for a finetune run: from its result, or the monitor's best so far."""
    if run.kind != "finetune":
        return None
    training = (run.result or {}).get("training") or {}
    if training.get("best_epoch"):
        return int(training["best_epoch"])
    monitor = ((run.params or {}).get("early_stopping") or {}).get("monitor", "val_loss")
    summary = metrics_service.summaries(session, run.id).get(f"finetune/{monitor}")
    return summary["best_step"] if summary else None


def curves(session: Session, run_id: int, max_points: int) -> dict:
    """The curves figure (as a dict) and the newest epoch seen, for polling."""
    run = runs_service.get_run(session, run_id)
    series = metrics_service.series(session, run_id)
    fig = figures.curves_figure(series, max_points=max_points, best_epoch=best_epoch(session, run))
    last = max((points[-1][0] for points in series.values() if points), default=0)
    points = sum(len(points) for points in series.values())
    return {"figure": fig, "last_step": last, "points": points}


def confusion(session: Session, run_id: int) -> dict:
    """Confusion heatmap and per-class scores of a finetune run's evaluation, or NotFound."""
    run = runs_service.get_run(session, run_id)
    evaluation = (run.result or {}).get("evaluation") or {}
    if not evaluation.get("confusion_matrix"):
        raise NotFound("confusion matrix of run", run_id)
    names = evaluation.get("class_names") or [
        str(i) for i in range(len(evaluation["confusion_matrix"]))
    ]
    fig = figures.confusion_figure(evaluation["confusion_matrix"], names)
    return {
        "figure": fig,
        "class_names": names,
        "per_class": evaluation.get("per_class", {}),
        "accuracy": evaluation.get("accuracy"),
        "balanced_accuracy": evaluation.get("balanced_accuracy"),
    }


def artifact_bytes(session: Session, run_id: int, name: str, limit: int = MAX_NPZ_BYTES):
    """A small artifact's bytes and its record, or NotFound."""
    artifact = artifacts_service.run_artifact(session, run_id, name)
    if artifact.size > limit:
        raise NotFound("viewable copy of", f"{name} of run {run_id} (too large)")
    return b"".join(artifacts_service.iter_chunks(session, artifact.id)), artifact


def reconstructions(session: Session, run_id: int) -> tuple[bytes, str]:
    """The probe images and each stage's output as one PNG grid, and its sha for caching."""
    runs_service.get_run(session, run_id)
    data, artifact = artifact_bytes(session, run_id, "reconstructions.npz")
    try:
        return figures.reconstructions_png(data), artifact.sha256 or ""
    except (ValueError, KeyError, OSError) as err:
        raise NotFound("readable reconstructions of run", run_id) from err


def recon_rows(session: Session, run_id: int) -> list[str]:
    """Row labels of the reconstructions grid ([] when the run has none)."""
    try:
        data, _ = artifact_bytes(session, run_id, "reconstructions.npz")
        return figures.recon_row_labels(data)
    except (NotFound, ValueError, KeyError, OSError):
        return []


def metrics_csv(session: Session, run_id: int) -> str:
    """Every epoch of every stage as one CSV row: stage, epoch, then one column per metric."""
    runs_service.get_run(session, run_id)
    series = metrics_service.series(session, run_id)
    names = sorted({key.rsplit("/", 1)[1] for key in series})
    rows: dict[tuple[str, int], dict] = {}
    for key, points in series.items():
        stage, name = key.rsplit("/", 1)
        for step, value in points:
            rows.setdefault((stage, step), {})[name] = value
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["stage", "epoch", *names])
    for (stage, step), values in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0])):
        writer.writerow([stage, step, *(_cell(values.get(n)) for n in names)])
    return out.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def metrics_json(session: Session, run_id: int) -> dict:
    """Every series as {key: {steps, values}} plus the latest/best summaries."""
    runs_service.get_run(session, run_id)
    series = metrics_service.series(session, run_id)
    return {
        "run_id": run_id,
        "series": {
            key: {"steps": [p[0] for p in points], "values": [p[1] for p in points]}
            for key, points in series.items()
        },
        "summary": metrics_service.summaries(session, run_id),
    }


def lineage(session: Session, run: Run) -> dict:
    """The pretrain run this one used, the runs that used this one, and its group."""
    parent = session.get(Run, run.parent_run_id) if run.parent_run_id else None
    children = session.execute(
        select(Run.id, Run.name, Run.kind, Run.status)
        .where(Run.parent_run_id == run.id)
        .order_by(Run.id)
        .limit(100)
    ).all()
    group = session.get(RunGroup, run.group_id) if run.group_id else None
    return {
        "parent": {"id": parent.id, "name": parent.name, "status": parent.status}
        if parent
        else None,
        "children": [{"id": i, "name": n, "kind": k, "status": s} for i, n, k, s in children],
        "group": {"id": group.id, "name": group.name, "kind": group.kind} if group else None,
    }
