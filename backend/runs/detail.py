"""What one run's page reads: curves, confusion matrix, reconstructions, metric exports, lineage."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend import plotting
from backend.formatting import fmt_pct
from backend.runs import figures
from backend.runs.downsample import downsample
from jobspec import ablations, kinds
from jobspec.stages import AE01, AE02, AE03
from jobspec.text import CLASS_NAME, shown
from store.artifacts import service as artifacts_service
from store.db import session_scope
from store.errors import InvalidRequest, NotFound
from store.runs import metrics as metrics_service
from store.runs import samples as samples_service
from store.runs import service as runs_service
from store.runs.models import Metric, Run, RunGroup

MAX_NPZ_BYTES = 64 * 1024 * 1024  # probe images are a few hundred KiB; refuse anything odd


def evaluated_stage(run: Run) -> str | None:
    """The stage whose model an evaluated kind keeps and scores (None: the kind is not
    evaluated, or not installed), as the kind says."""
    job = kinds.find(run.kind)
    return job.evaluated_stage(run.params) if job else None


def best_epoch(session: Session, run: Run) -> int | None:
    """The epoch of `evaluated_stage` an evaluated run keeps: from its result, or the one
    its kind's Keep rule (early stopping) would restore so far, min_delta counted."""
    job = kinds.find(run.kind)
    if job is None or job.evaluated_stage(run.params) is None:
        return None
    training = (run.result or {}).get("training") or {}
    if training.get("best_epoch"):
        return int(training["best_epoch"])
    keep = job.kept_epoch_rule(run.params)
    if keep is None:  # it keeps its last epoch: no pick to mark
        return None
    summary = metrics_service.summaries(session, run.id).get(f"{keep.stage}/{keep.monitor}")
    if not summary:
        return None
    return summary["kept_step"] if summary["kept_step"] is not None else summary["best_step"]


MAX_HIDDEN_PANELS = 64  # panel keys in one `hide` (a pretrain with trials has a dozen)
MAX_PANEL_KEY = 80  # characters of one


def hidden_panels(text: str | None) -> frozenset[str]:
    """The `hide` query: comma-separated panel keys ("ae01/loss,finetune/accuracy"),
    bounded; a key no cell has is ignored (its stage may not have started yet)."""
    keys = [k.strip() for k in (text or "").split(",") if k.strip()]
    if len(keys) > MAX_HIDDEN_PANELS:
        raise InvalidRequest("hide", f"at most {MAX_HIDDEN_PANELS} panels (MAX_HIDDEN_PANELS)")
    if any(len(k) > MAX_PANEL_KEY for k in keys):
        raise InvalidRequest("hide", f"a panel key is at most {MAX_PANEL_KEY} characters")
    return frozenset(keys)


def curves(
    session: Session, run_id: int, max_points: int, hide: frozenset[str] = frozenset()
) -> dict:
    """The curves figure (as a dict) without the `hide` panels, every panel it can draw
    (the page's picker) and the newest epoch seen, for polling."""
    run = runs_service.get_run(session, run_id)
    series, wall = metrics_service.timed_series_many(session, [run_id])[run_id]
    plan = _plan(run)
    fig = figures.curves_figure(
        series,
        max_points=max_points,
        best_epoch=best_epoch(session, run),
        best_stage=evaluated_stage(run),
        plan=plan,
        wall=wall,
        hide=hide,
    )
    last = max((points[-1][0] for points in series.values() if points), default=0)
    points = sum(len(points) for points in series.values())
    # The worker's samples: a time series of their own (seconds), never epochs.
    system = figures.system_figure(samples_service.series(session, run_id), max_points=max_points)
    panels = [
        {**panel, "hidden": panel["key"] in hide} for panel in figures.curve_panels(series, plan)
    ]
    return {
        "figure": fig,
        "system": system,
        "last_step": last,
        "points": points,
        "panels": panels,
    }


def samples(session: Session, run_id: int, max_points: int | None = None) -> dict:
    """The run's time series against seconds since it started ({key: seconds, values,
    attempts}), each shortened to max_points when given."""
    runs_service.get_run(session, run_id)
    out = {}
    for key, found in samples_service.series(session, run_id).items():
        keep: list[int] = list(range(len(found.values)))
        if max_points is not None:
            keep = [int(i) for i in downsample(keep, found.values, max_points)[0]]
        out[key] = {
            "seconds": [found.seconds[i] for i in keep],
            "values": [found.values[i] for i in keep],
            "attempts": [found.attempts[i] for i in keep],
        }
    return {"run_id": run_id, "x": "seconds", "series": out}


def _plan(run: Run) -> dict[str, int]:
    """A live run's planned epochs per stage (cells for stages still to come); a finished
    run's axes span what it ran."""
    job = kinds.find(run.kind)
    if not run.status.is_active or job is None:
        return {}
    return job.stage_plan(run.params)


PER_CLASS_ROWS = 100  # rows of the per-class table a page (or one answer) holds


def class_names(evaluation: dict) -> list[str]:
    """An evaluation's class names, each cut to CLASS_NAME.max_chars (a marker says so)."""
    names = evaluation.get("class_names") or range(len(evaluation.get("confusion_matrix") or []))
    return [shown(name, limit=CLASS_NAME.max_chars) for name in names]


def per_class_page(evaluation: dict, offset: int = 0, limit: int = PER_CLASS_ROWS) -> dict:
    """`limit` rows of the per-class scores from `offset` (class order), names cut, with
    how many there are: a 1,000-class table is sent and drawn a page at a time."""
    per_class = evaluation.get("per_class") or {}
    rows = itertools.islice(per_class.items(), offset, offset + limit)
    return {
        "rows": {shown(name, limit=CLASS_NAME.max_chars): scores for name, scores in rows},
        "total": len(per_class),
        "offset": offset,
        "limit": limit,
    }


def confusion(session: Session, run_id: int, offset: int = 0, limit: int = PER_CLASS_ROWS) -> dict:
    """Confusion heatmap and per-class scores of a finetune run's evaluation, or NotFound;
    the per-class scores `limit` classes from `offset` (per_class_total: how many)."""
    run = runs_service.get_run(session, run_id)
    evaluation = (run.result or {}).get("evaluation") or {}
    if not evaluation.get("confusion_matrix"):
        raise NotFound("confusion matrix of run", run_id)
    names = class_names(evaluation)
    fig = figures.confusion_figure(evaluation["confusion_matrix"], names)
    page = per_class_page(evaluation, offset, limit)
    return {
        "figure": fig,
        "class_names": names,
        "per_class": page["rows"],
        "per_class_total": page["total"],
        "per_class_offset": offset,
        "accuracy": evaluation.get("accuracy"),
        "balanced_accuracy": evaluation.get("balanced_accuracy"),
        # the heatmap's rows and columns, as class indices (it may show only some classes)
        "shown": plotting.heatmap_classes([evaluation["confusion_matrix"]]),
        "errors_url": f"/api/runs/{run_id}/errors"
        if has_artifact(session, run_id, "predictions.npz")
        else None,
    }


def has_artifact(session: Session, run_id: int, name: str) -> bool:
    """Whether the run stored a file of that name."""
    try:
        artifacts_service.run_artifact(session, run_id, name)
    except NotFound:
        return False
    return True


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


def reconstruction_info(session: Session, run_id: int) -> dict:
    """The reconstructions stored so far: row labels and the grid's versioned address."""
    runs_service.get_run(session, run_id)
    try:
        data, artifact = artifact_bytes(session, run_id, "reconstructions.npz")
        rows = figures.recon_row_labels(data)
    except (NotFound, ValueError, KeyError, OSError):
        return {"rows": [], "url": None, "sha256": None}
    version = (artifact.sha256 or "")[:16]
    url = f"/api/runs/{run_id}/reconstructions.png?v={version}"
    return {"rows": rows, "url": url, "sha256": artifact.sha256}


def recon_rows(session: Session, run_id: int) -> list[str]:
    """Row labels of the reconstructions grid ([] when the run has none)."""
    try:
        data, _ = artifact_bytes(session, run_id, "reconstructions.npz")
        return figures.recon_row_labels(data)
    except (NotFound, ValueError, KeyError, OSError):
        return []


METRICS_CSV_BATCH = 5_000  # metric values read at once (whole epochs: more if one epoch has more)


def metrics_csv_columns(session: Session, run_id: int) -> list[str]:
    """The metric names a run's metrics.csv has a column for, or NotFound."""
    runs_service.get_run(session, run_id)
    keys = session.scalars(select(Metric.key).where(Metric.run_id == run_id).distinct())
    return sorted({key.rsplit("/", 1)[1] for key in keys})


def metrics_csv_chunks(run_id: int, names: list[str]) -> Iterator[str]:
    """metrics.csv a batch of epochs at a time: every epoch of every stage as one row
    (stage, epoch, then one column per metric), in epoch then stage order. Each batch is
    read in a short session of its own."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["stage", "epoch", *names])
    with session_scope() as session:
        per_step = select(Metric.step, func.count()).where(Metric.run_id == run_id)
        counts = session.execute(per_step.group_by(Metric.step).order_by(Metric.step)).all()
    for first, last in _step_batches([(step, n) for step, n in counts], METRICS_CSV_BATCH):
        rows: dict[tuple[str, int], dict] = {}
        with session_scope() as session:
            batch = select(Metric.key, Metric.step, Metric.value).where(
                Metric.run_id == run_id, Metric.step >= first, Metric.step <= last
            )
            for key, step, value in session.execute(batch):
                stage, name = key.rsplit("/", 1)
                rows.setdefault((stage, step), {})[name] = value
        for (stage, step), values in sorted(rows.items(), key=lambda row: (row[0][1], row[0][0])):
            writer.writerow([stage, step, *(_cell(values.get(n)) for n in names)])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    if out.tell():
        yield out.getvalue()


def _step_batches(counts: list[tuple[int, int]], size: int) -> Iterator[tuple[int, int]]:
    """(first, last) step of runs of consecutive epochs holding about `size` values each."""
    batch: list[int] = []
    held = 0
    for step, n in counts:
        if batch and held + n > size:
            yield batch[0], batch[-1]
            batch, held = [], 0
        batch.append(step)
        held += n
    if batch:
        yield batch[0], batch[-1]


def metrics_csv(session: Session, run_id: int) -> str:
    """The whole metrics.csv at once (for tests and scripts; the route streams it)."""
    return "".join(metrics_csv_chunks(run_id, metrics_csv_columns(session, run_id)))


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
    """The pretrain run this one used, the run its settings came from (a tune's study), the
    runs that used this one, and its group."""
    parent = session.get(Run, run.parent_run_id) if run.parent_run_id else None
    source = session.get(Run, run.source_run_id) if run.source_run_id else None
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
        "source": {
            "id": source.id,
            "name": source.name,
            "kind": source.kind,
            "study": source.study_name,
        }
        if source
        else None,
    }


# --- Reading a run's result for people (the run page and the experiment report). ---

BASELINES = {
    "image_mean_colour": "filling each image with its mean colour",
    "dataset_mean_image": "the data set's mean image",
}
DEPTHS = {AE01: "AE01", AE02: "AE01-02", AE03: "stacked AE01-03"}
ZEROS_WORTH_SAYING = 0.05  # a share of output pixels exactly 0 worth a sentence


def split_of(run: Run) -> dict | None:
    """The train/validation split the run used (runs from before splits were stored: None)."""
    split = (run.result or {}).get("split")
    if not split:
        return None
    return {**split, "short": str(split.get("fingerprint") or "")[:12]}


def kept_epoch(training: dict) -> int | None:
    """The epoch whose model the run keeps: early stopping's restored one, else the last."""
    if training.get("best_epoch") and training.get("restored_best_weights", True):
        return int(training["best_epoch"])
    return training.get("epochs_run")


def training_state(run: Run) -> dict | None:
    """How a finetune's training ended: 'stopped early at epoch 10 of 15', kept epoch."""
    training = (run.result or {}).get("training") or {}
    if not kinds.features(run.kind).evaluation or not training.get("epochs_run"):
        return None
    ran = int(training["epochs_run"])
    stage, job = evaluated_stage(run), kinds.find(run.kind)
    planned_by_kind = job.epochs_of(run.params, stage) if job and stage else None
    planned = training.get("epochs_planned") or planned_by_kind or ran
    if "epochs_planned" in training:
        stopped = bool(training.get("stopped_early"))
    else:  # older runs said stopped_early even when training ran to its last epoch
        stopped = ran < planned and not training.get("cancelled")
    if training.get("cancelled"):
        text = f"cancelled at epoch {ran} of {planned}"
    elif stopped:
        text = f"stopped early at epoch {ran} of {planned}"
    else:
        text = f"ran all {planned} epochs" if ran >= planned else f"ran {ran} of {planned} epochs"
    return {
        "epochs_run": ran,
        "epochs_planned": planned,
        "stopped_early": stopped,
        "kept_epoch": kept_epoch(training),
        "monitor": training.get("monitor"),
        "text": text,
    }


def warnings_of(run: Run) -> list[str]:
    """Every warning the worker stored with the result (training and stages)."""
    result = run.result or {}
    found = list(result.get("warnings") or []) + list(
        (result.get("training") or {}).get("warnings") or []
    )
    for stage in (result.get("stages") or {}).values():
        if isinstance(stage, dict):
            found += list(stage.get("warnings") or [])
    return [str(w) for w in dict.fromkeys(found)]


def yardsticks(run: Run) -> dict | None:
    """Test MSE, PSNR and exact zeros per stage beside the two baselines, each stage read
    in a sentence, and each probe image's error; None for runs without them."""
    result = run.result or {}
    stages = (result.get("reconstruction") or {}).get("stages") or {}
    if not stages:
        return None
    found = (result.get("reconstruction") or {}).get("baselines") or {}
    baselines = [
        {"name": name, "label": label, **found[name]}
        for name, label in BASELINES.items()
        if name in found
    ]
    rows = []
    for stage, scores in stages.items():
        zeros = scores.get("zero_fraction")
        rows.append(
            {
                "stage": stage,
                "label": DEPTHS.get(stage, stage),
                **scores,
                "reading": reading(scores.get("mse"), baselines),
                "zeros_note": f"{fmt_pct(zeros)} of its output pixels are exactly 0"
                if zeros is not None and zeros >= ZEROS_WORTH_SAYING
                else "",
            }
        )
    probes = result.get("probe_errors") or {}
    return {
        "stages": rows,
        "baselines": baselines,
        "decoder_output": result.get("decoder_output"),
        "probe_errors": [{"stage": s, "errors": list(e)} for s, e in probes.items() if e],
    }


def reading(mse: float | None, baselines: list[dict]) -> str:
    """A stage's test MSE against the baselines in words ('' without numbers)."""
    if mse is None or not baselines:
        return ""
    beaten = [b["label"] for b in baselines if mse < b["mse"]]
    lost = [b["label"] for b in baselines if mse >= b["mse"]]
    if not lost:
        return f"better than {_either(beaten)}"
    if not beaten:
        return f"worse than {_either(lost)}"
    return f"better than {_either(beaten)} but worse than {_either(lost)}"


def _either(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"both baselines ({'; '.join(labels)})"


def scores(run: Run, train_counts: dict[str, int]) -> dict:
    """A finetune's test scores: accuracy, balanced accuracy, macro-F1 and the recall of its
    rarest training classes (jobspec.ablations), None where the evaluation lacks them."""
    evaluation = (run.result or {}).get("evaluation") or {}
    rare = ablations.rarest_classes(train_counts) if train_counts else []
    return {
        name: ablations.metric_value(name, evaluation, train_counts or {})
        for name in ablations.STUDY_METRICS
    } | {"rarest": rare if evaluation.get("per_class") else []}
