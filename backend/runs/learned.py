"""What the autoencoders learned, as the pages show it: a pretrain's probe scores per
encoder beside a random encoder, AE01's filters and a 2-D PCA of test features, read from
the files its probe stage stored (jobspec/learned.py; worker/ml/probe.py writes them).

Used by the run page (`for_page`), compare (`compare_rows`) and the experiment report
(`for_report`). A run from before the stage has no files: the section says so.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy.orm import Session

from backend import plotting
from backend.compare import stats
from backend.runs import detail
from jobspec import kinds
from jobspec.learned import ENCODERS, LEARNED_FILE, LEARNED_FILTERS_FILE, RANDOM_ENCODER
from jobspec.metrics import label_of
from jobspec.stages import AE03
from store.errors import NotFound
from store.runs.models import Run

MAX_LEARNED_BYTES = 4 * 1024 * 1024  # 1,000 PCA points x 4 encoders is about 100 KB
MAX_FILTERS_BYTES = 1024 * 1024
MAX_LEGEND_CLASSES = 20  # one trace (and legend entry) per class up to this many
# The table's columns: (scorer, its label, the metric names in the order shown).
SCORERS = (
    (
        "probe",
        "Linear probe",
        (
            "val_probe_accuracy",
            "val_probe_balanced_accuracy",
            "probe_accuracy",
            "probe_balanced_accuracy",
        ),
    ),
    (
        "knn",
        "k-NN",
        ("val_knn_accuracy", "val_knn_balanced_accuracy", "knn_accuracy", "knn_balanced_accuracy"),
    ),
)
COMPARE_METRICS = ("probe_balanced_accuracy", "knn_balanced_accuracy")
DEFAULT_PCA = AE03  # the stacked encoder's projection shows first


def stored(session: Session, run_id: int) -> dict | None:
    """The run's learned.json, or None when it has none (or an unreadable one)."""
    try:
        data, _ = detail.artifact_bytes(session, run_id, LEARNED_FILE, MAX_LEARNED_BYTES)
        found = json.loads(data)
    except (NotFound, ValueError):
        return None
    return found if isinstance(found, dict) else None


def filters_uri(session: Session, run_id: int) -> str | None:
    """AE01's filter grid as a data: URI (None when the run has none)."""
    try:
        png, _ = detail.artifact_bytes(session, run_id, LEARNED_FILTERS_FILE, MAX_FILTERS_BYTES)
    except NotFound:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def for_page(session: Session, run: Run) -> dict | None:
    """The run page's section: None for kinds without autoencoders; `missing` says why a
    pretrain has no results yet (or never will)."""
    if not kinds.features(run.kind).reconstructions:
        return None
    found = stored(session, run.id)
    if found is None:
        return {"missing": _missing(run), "waiting": run.status.is_active}
    return section(found) | {
        "filters_src": filters_uri(session, run.id),
        "pca": pca_figure(found),
        "pca_points": found.get("max_pca_points"),
    }


def for_report(session: Session, run_id: int) -> dict | None:
    """The experiment report's section (no script: the PCA is left to the run page)."""
    found = stored(session, run_id)
    if found is None:
        return None
    return section(found) | {"filters_src": filters_uri(session, run_id)}


def _missing(run: Run) -> str:
    if run.status.is_active:
        return "Probe scores come at the end of the run, after the last autoencoder trains."
    return (
        "This run has no probe scores: it finished before pretrains probed what they learned, "
        "or it stopped before its last stage."
    )


def section(found: dict) -> dict:
    """Table rows (one per encoder, its scores and how far it is from the random encoder),
    the settings used, in words; `error` when the probe stage failed."""
    if found.get("error"):
        return {"error": str(found["error"])[:500], "rows": []}
    encoders = _encoders(found)
    random = _scores(encoders.get(RANDOM_ENCODER))
    rows = []
    for name, label in ENCODERS.items():
        if name not in encoders:
            continue
        scores = _scores(encoders[name])
        rows.append(
            {
                "encoder": name,
                "label": label,
                "scores": scores,
                "baseline": name == RANDOM_ENCODER,
                "over_random": _difference(scores, random, "probe_accuracy"),
            }
        )
    return {"rows": rows, "scorers": SCORERS, "note": _note(found), "error": None}


def _encoders(found: dict) -> dict[str, Any]:
    encoders = found.get("encoders")
    return encoders if isinstance(encoders, dict) else {}


def _scores(entry: Any) -> dict[str, float]:
    if not isinstance(entry, dict):
        return {}
    return {k: float(v) for k, v in entry.items() if isinstance(v, int | float) and k != "features"}


def _difference(scores: dict, random: dict, name: str) -> float | None:
    if name in scores and name in random:
        return scores[name] - random[name]
    return None


def _note(found: dict) -> str:
    """How the scores were made, on how many images, in one paragraph."""
    images, available = found.get("images") or {}, found.get("available") or {}
    counts = ", ".join(
        f"{images.get(part, 0)} {part}"
        + (f" of {available[part]}" if available.get(part, 0) > images.get(part, 0) else "")
        for part in ("train", "validation", "test")
    )
    capped = any(available.get(p, 0) > images.get(p, 0) for p in available)
    cap = (
        f" At most {found.get('max_images')} images of each part are probed (a fixed random "
        "sample, STACKLAB_LEARNED_MAX_IMAGES)."
        if capped
        else ""
    )
    grid = found.get("pool_grid", 2)
    return (
        f"Frozen features of each encoder (run with training off), averaged over a {grid}x{grid} "
        f"grid of image regions and standardized on the training part. Linear probe: logistic "
        f"regression (C = {found.get('c', 1.0)}); k-NN: the {found.get('k', 10)} nearest "
        f"training images, majority vote. Fitted on the training part, scored on the "
        f"validation part and the test set ({counts} images).{cap} Random: a randomly "
        "initialised encoder of the stacked shape; a depth that does not beat it learned "
        "nothing these probes can use."
    )


def pca_figure(found: dict) -> dict | None:
    """Each encoder's 2-D PCA of test features coloured by class; buttons pick the encoder."""
    encoders = _encoders(found)
    shown = [n for n in ENCODERS if isinstance((encoders.get(n) or {}).get("pca"), dict)]
    if not shown:
        return None
    classes = [str(c) for c in found.get("classes") or []]
    first = DEFAULT_PCA if DEFAULT_PCA in shown else shown[0]
    traces: list[dict] = []
    owner: list[str] = []
    for name in shown:
        for trace in _pca_traces(encoders[name]["pca"], classes, visible=name == first):
            traces.append(trace)
            owner.append(name)
    # A dropdown, not a row of buttons: four long labels do not fit a phone's width.
    choices = [
        {
            "label": _pca_label(name, encoders[name]["pca"]),
            "method": "restyle",
            "args": [{"visible": [o == name for o in owner]}],
        }
        for name in shown
    ]
    layout = {
        "height": 460,
        "margin": {"l": 48, "r": 16, "t": 48, "b": 40},
        "xaxis": {"title": {"text": "PC 1"}, "zeroline": False},
        "yaxis": {"title": {"text": "PC 2"}, "zeroline": False},
        "updatemenus": [
            {
                "type": "dropdown",
                "x": 0,
                "y": 1.02,
                "xanchor": "left",
                "yanchor": "bottom",
                "showactive": True,
                "buttons": choices,
                "active": shown.index(first),
            }
        ],
    }
    return plotting.figure(traces, layout)


def _pca_label(name: str, pca: dict) -> str:
    explained = [e for e in pca.get("explained") or [] if isinstance(e, int | float)]
    share = f" · {sum(explained):.0%} of the variance" if len(explained) == 2 else ""
    return f"{ENCODERS[name]}{share}"


def _pca_traces(pca: dict, classes: list[str], *, visible: bool) -> list[dict]:
    xs, ys, labels = pca.get("x") or [], pca.get("y") or [], pca.get("label") or []
    names = [classes[i] if 0 <= i < len(classes) else str(i) for i in labels]
    base: dict[str, Any] = {
        "type": "scatter",  # SVG: WebGL traces need eval, which the CSP forbids
        "mode": "markers",
        "visible": visible,
        "hovertemplate": "%{text}<extra></extra>",
        "marker": {"size": 5, "opacity": 0.75},
    }
    if len(classes) > MAX_LEGEND_CLASSES:
        return [
            base
            | {
                "x": xs,
                "y": ys,
                "text": names,
                "showlegend": False,
                "marker": base["marker"] | {"color": labels, "colorscale": "Turbo"},
            }
        ]
    traces = []
    for index, name in enumerate(classes):
        keep = [i for i, label in enumerate(labels) if label == index]
        if keep:
            traces.append(
                base
                | {
                    "name": name,
                    "legendgroup": name,
                    "x": [xs[i] for i in keep],
                    "y": [ys[i] for i in keep],
                    "text": [name] * len(keep),
                }
            )
    return traces


def compare_rows(session: Session, runs: list[Run]) -> list[dict]:
    """Compare's rows for pretrains with probe scores: each encoder's test balanced
    accuracy under the linear probe and k-NN, in the shape of compare's test rows."""
    found = {
        run.id: stored(session, run.id) for run in runs if kinds.features(run.kind).reconstructions
    }
    rows = []
    for metric in COMPARE_METRICS:
        for name, label in ENCODERS.items():
            cells = {}
            for run_id, learned in found.items():
                value = _scores(_encoders(learned or {}).get(name)).get(metric)
                if value is not None:
                    cells[str(run_id)] = {"value": value, "partial": False}
            if not cells:
                continue
            values = {run_id: cell["value"] for run_id, cell in cells.items()}
            rows.append(
                {
                    "key": f"learned/{name}/{metric}",
                    "label": f"{label_of(metric)} · {label}",
                    "goal": "max",
                    "percent": True,
                    "cells": cells,
                    "best_run": stats.single_best(values, goal="max", percent=True),
                }
            )
    return rows
