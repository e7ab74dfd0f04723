"""Side-by-side comparison of runs: parameters (those that differ first), seed groups with
mean ± sd, metrics, curves, confusion matrices."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.orm import Session

from backend import plotting
from backend.compare import figures, seeds, stats
from backend.formatting import flatten, fmt_pct
from backend.runs import learned
from backend.runs import partial as partial_runs
from jobspec import ablations
from jobspec.metrics import is_scored, label_of, metric
from jobspec.stages import STAGES
from store.artifacts import service as artifacts_service
from store.datasets import service as datasets_service
from store.errors import InvalidRequest
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.models import Run

MAX_ID = 2**63 - 1  # what the id column holds
METRIC_ORDER = ["val_accuracy", "val_loss", "accuracy", "loss"]
TEST_ROWS = [  # field, label, goal, shown as a percentage
    ("accuracy", "test accuracy", "max", True),
    ("balanced_accuracy", "balanced accuracy", "max", True),
    ("macro_f1", "macro-F1", "max", True),
    ("minority_recall", "recall of the rarest classes", "max", True),
    ("test_reconstruction_loss", "test reconstruction loss", "min", False),
]


def parse_ids(text: str | None) -> list[int]:
    """Run ids from "1,2,3" (spaces allowed, duplicates dropped), at least two."""
    ids: list[int] = []
    for part in (text or "").replace(" ", ",").split(","):
        if not part:
            continue
        # isdigit() alone lets "²" and "١" through, which int() then refuses or misreads.
        if not (part.isascii() and part.isdigit()) or len(part) > 19 or int(part) > MAX_ID:
            raise InvalidRequest("ids", f"{part[:30]!r} is not a run id")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) < 2:
        raise InvalidRequest("ids", "pick at least two runs to compare, e.g. ?ids=3,4")
    return ids


def compare(*, session: Session, ids: list[int]) -> dict:
    """Everything the compare page shows for these runs (NotFound for an unknown id)."""
    runs = [runs_service.get_run(session, run_id) for run_id in ids]
    series = metrics_service.timed_series_many(session, [run.id for run in runs])
    summaries = {run.id: metrics_service.summaries(session, run.id) for run in runs}
    params = params_table(session, runs)
    metrics, tests = metrics_table(runs, summaries), test_table(session, runs)
    tests += learned.compare_rows(session, runs)  # pretrains: what their encoders learned
    return {
        "runs": [_run_card(session, run, summaries[run.id]) for run in runs],
        "running": any(run.status.is_active for run in runs),
        "curves": curve_figures(runs, series),
        "params": params,
        "groups": seeds.seed_groups(runs, params, [(tests, "value"), (metrics, "best")]),
        "metrics": metrics,
        "tests": tests,
        "confusion": confusion_section(runs),
    }


def _run_card(session: Session, run: Run, summaries: dict) -> dict:
    names = {a.name for a in artifacts_service.list_run_artifacts(session, run.id)}
    has_recon = bool(names & {"reconstructions.png", "reconstructions.npz"})
    return {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "status": run.status,
        "tags": run.tags,
        "dataset": datasets_service.get(session, run.dataset_id).name,
        "url": f"/runs/{run.id}",
        "reconstructions": f"/api/runs/{run.id}/reconstructions.png" if has_recon else None,
        "partial": partial_runs.partial_of(run, partial_runs.last_epochs(summaries)),
    }


def _metric_name(key: str) -> tuple[str, str]:
    stage, _, name = key.rpartition("/")
    return stage, name


def curve_figures(runs: list[Run], series: dict[int, tuple[dict, dict]]) -> list[dict]:
    """One figure per metric, one trace per run; a pretrain stage's metric gets a figure of
    its own (each stage has its own epochs), a tune's trials share their run's colour.
    series: metrics_service.timed_series_many (each point's wall time rides along for the
    time axis)."""
    charts: dict[str, list[dict]] = {}
    for index, run in enumerate(runs):
        points_of, wall_of = series[run.id]
        for key, points in points_of.items():
            stage, name = _metric_name(key)
            chart = f"{stage}/{name}" if stage in STAGES else name
            trial = stage.startswith("trial-")
            label = f"#{run.id} {run.name}" + (f" · {stage}" if trial else "")
            color = figures.PALETTE[index % len(figures.PALETTE)]
            charts.setdefault(chart, []).append(
                {"label": label, "points": points, "color": color, "wall": wall_of.get(key)}
            )
    order = sorted(charts, key=_chart_order)
    return [
        {
            "metric": chart,
            "label": label_of(chart),
            "figure": figures.curves(label_of(chart), charts[chart], metric(chart)),
        }
        for chart in order
    ]


def _chart_order(chart: str) -> tuple:
    stage, name = _metric_name(chart)
    return (METRIC_ORDER.index(name) if name in METRIC_ORDER else 99, stage, name)


def params_table(session: Session, runs: list[Run]) -> list[dict]:
    """One row per parameter with each run's value; differs when they are not all equal."""
    flat = {}
    for run in runs:
        extra = {
            "kind": run.kind,
            "dataset": datasets_service.get(session, run.dataset_id).name,
            "parent_run_id": run.parent_run_id,
        }
        flat[run.id] = {**extra, **flatten(run.params or {})}
    keys = list(dict.fromkeys(key for values in flat.values() for key in values))
    rows = []
    for key in keys:
        values = [flat[run.id].get(key) for run in runs]
        rows.append(
            {
                "key": key,
                "values": {str(run.id): value for run, value in zip(runs, values, strict=True)},
                "differs": any(value != values[0] for value in values),
                "seed": key in seeds.SEED_KEYS,
            }
        )
    # What differs first (the seed last among them), then the rest in their usual order.
    return sorted(rows, key=lambda row: (not row["differs"], row["differs"] and row["seed"]))


def metrics_table(runs: list[Run], summaries: dict[int, dict]) -> list[dict]:
    """Per metric key: each run's final value, its value at the kept epoch (the epoch whose
    model the run keeps: early stopping's restored one, else the last) and that epoch, and
    which run did best there."""
    keys = sorted(
        {key for run in runs for key in summaries[run.id]},
        key=lambda k: (
            METRIC_ORDER.index(_metric_name(k)[1]) if _metric_name(k)[1] in METRIC_ORDER else 99,
            k,
        ),
    )
    rows = []
    for key in keys:
        cells = {}
        for run in runs:
            summary = summaries[run.id].get(key)
            if summary:
                kept = summary["kept_step"] is not None
                cells[str(run.id)] = {
                    "final": summary["last_value"],
                    "best": summary["kept_value"] if kept else summary["last_value"],
                    "best_epoch": summary["kept_step"] if kept else summary["last_step"],
                    "epochs": summary["last_step"],
                }
        goal, scored = metrics_service.goal_of(key), is_scored(key)
        rows.append(
            {
                "key": key,
                "label": label_of(key),
                "goal": goal,
                "scored": scored,  # time and throughput are not scores: no "best" run
                "percent": metric(key).percent,
                "cells": cells,
                "best_run": _best(cells, goal, "best", percent=metric(key).percent)
                if scored
                else None,
            }
        )
    return rows


def test_table(session: Session, runs: list[Run]) -> list[dict]:
    """Test-set numbers from each run's result, where it has them: accuracy, balanced
    accuracy, macro-F1, the rarest classes' recall, reconstruction loss."""
    counts = {run.id: datasets_service.get(session, run.dataset_id).train_counts for run in runs}
    rows = []
    for field, label, goal, percent in TEST_ROWS:
        cells = {}
        for run in runs:
            result = run.result or {}
            evaluation = result.get("evaluation") or {}
            if field in ablations.STUDY_METRICS and evaluation:
                value = ablations.metric_value(field, evaluation, counts[run.id] or {})
            else:
                value = evaluation.get(field, result.get(field))
            if isinstance(value, int | float):
                # An evaluation made after the run stopped scores a partial model.
                cells[str(run.id)] = {
                    "value": float(value),
                    "partial": bool(evaluation.get("partial")),
                }
        if cells:
            best = _best(cells, goal, "value", percent=percent)
            rows.append(
                {
                    "key": field,
                    "label": label,
                    "goal": goal,
                    "percent": percent,
                    "cells": cells,
                    "best_run": best,
                }
            )
    return rows


def _best(cells: dict, goal: str, field: str, *, percent: bool) -> str | None:
    """The run with the single best value of the row (None on a tie: nothing is bolded)."""
    values = {run_id: cell[field] for run_id, cell in cells.items()}
    return stats.single_best(values, goal=goal, percent=percent)


MAX_RECALL_SENTENCES = 40


class RecallChange(StrEnum):
    """How one class's recall moved from one run to the other: a sentence's verb, and its
    CSS class on the compare page."""

    GAINED = "gained"
    LOST = "lost"
    KEPT = "kept"


def confusion_section(runs: list[Run]) -> dict:
    """Each evaluated run's matrix, and each later one minus the first, with recall changes."""
    evaluated = [
        run for run in runs if (run.result or {}).get("evaluation", {}).get("confusion_matrix")
    ]
    matrices = [
        {
            "run_id": run.id,
            "figure": figures.confusion(
                f"#{run.id} {run.name}",
                run.result["evaluation"]["confusion_matrix"],
                run.result["evaluation"]["class_names"],
            ),
        }
        for run in evaluated
    ]
    differences = []
    if evaluated:
        base = evaluated[0]
        for other in evaluated[1:]:
            differences.append(difference(base, other))
    return {"matrices": matrices, "differences": differences}


def recall(matrix: list[list[float]]) -> list[float | None]:
    """Per-class recall from a confusion matrix (rows are the true class)."""
    return [row[i] / sum(row) if sum(row) else None for i, row in enumerate(matrix)]


def difference(base: Run, other: Run) -> dict:
    """other minus base: the matrix difference and a sentence per class on recall."""
    a, b = base.result["evaluation"], other.result["evaluation"]
    title = f"#{other.id} minus #{base.id} (red: more images in #{other.id})"
    if a["class_names"] != b["class_names"]:
        return {
            "a": base.id,
            "b": other.id,
            "title": title,
            "figure": None,
            "sentences": [],
            "problem": "the two runs were evaluated on different classes",
        }
    matrix = [
        [vb - va for va, vb in zip(row_a, row_b, strict=True)]
        for row_a, row_b in zip(a["confusion_matrix"], b["confusion_matrix"], strict=True)
    ]
    sentences = []
    for name, ra, rb in zip(
        a["class_names"], recall(a["confusion_matrix"]), recall(b["confusion_matrix"]), strict=True
    ):
        if ra is None or rb is None:
            continue
        change = (rb - ra) * 100
        verb = (
            RecallChange.GAINED
            if change > 0.05
            else RecallChange.LOST
            if change < -0.05
            else RecallChange.KEPT
        )
        text = f"{name}: #{other.id} {verb} recall vs #{base.id}, {fmt_pct(ra)} → {fmt_pct(rb)}"
        sentences.append(
            {
                "class": name,
                "change": change,
                "verb": verb,
                "text": text
                + (f" ({change:+.1f} points)." if verb is not RecallChange.KEPT else "."),
            }
        )
    if len(sentences) > MAX_RECALL_SENTENCES:  # many classes: the biggest changes only
        sentences = sorted(sentences, key=lambda s: -abs(s["change"]))[:MAX_RECALL_SENTENCES]
    return {
        "a": base.id,
        "b": other.id,
        "title": title,
        "matrix": matrix if len(matrix) <= plotting.MAX_HEATMAP_CLASSES else None,
        "figure": figures.difference(title, matrix, a["class_names"]),
        "sentences": sentences,
        "problem": None,
    }
