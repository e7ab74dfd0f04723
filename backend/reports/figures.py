"""The report's charts: the pretrain's curves per stage and its finetunes' validation
curves, as inline SVG (backend/reports/svg.py)."""

from __future__ import annotations

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.reports import svg
from jobspec.stages import STAGES
from store.runs import metrics as metrics_service
from store.runs.models import Metric

MAX_FINETUNE_LINES = 12
FINETUNE_KEYS = ("finetune/val_balanced_accuracy", "finetune/val_accuracy")


def charts(session: Session, data: dict) -> dict[str, Markup]:
    """{"root": svg, "finetunes": svg}, '' where there is nothing to draw."""
    return {
        "root": pretrain_chart(session, data["root"]["id"]),
        "finetunes": finetunes_chart(session, {f["id"]: f["name"] for f in data["finetunes"]}),
    }


def pretrain_chart(session: Session, run_id: int) -> Markup:
    """Train (solid) and validation (dashed) loss of each autoencoder stage per epoch."""
    keys = [f"{stage}/{name}" for stage in STAGES for name in ("loss", "val_loss")]
    series = metrics_service.series(session, run_id, keys)
    lines = [
        {
            "name": f"{stage} {'val' if name == 'val_loss' else 'train'} loss",
            "points": series[f"{stage}/{name}"],
            "dash": name == "val_loss",
            "group": index,
        }
        for index, stage in enumerate(STAGES)
        for name in ("loss", "val_loss")
        if series.get(f"{stage}/{name}")
    ]
    return svg.line_chart(lines, title="Autoencoder loss per epoch", y_label="MSE")


def finetunes_chart(session: Session, names: dict[int, str]) -> Markup:
    """Each finetune's validation balanced accuracy per epoch (accuracy for older runs)."""
    run_ids = list(names)
    ids = run_ids[:MAX_FINETUNE_LINES]
    if not ids:
        return Markup("")
    rows = session.execute(
        select(Metric.run_id, Metric.key, Metric.step, Metric.value)
        .where(Metric.run_id.in_(ids), Metric.key.in_(FINETUNE_KEYS))
        .order_by(Metric.run_id, Metric.key, Metric.step)
    ).all()
    found: dict[int, dict[str, list]] = {}
    for run_id, key, step, value in rows:
        found.setdefault(run_id, {}).setdefault(key, []).append((step, value))
    balanced = any(FINETUNE_KEYS[0] in keys for keys in found.values())
    key = FINETUNE_KEYS[0] if balanced else FINETUNE_KEYS[1]
    lines = [
        {"name": f"#{run_id} {names.get(run_id, '')}", "points": found[run_id][key], "group": index}
        for index, run_id in enumerate(ids)
        if key in found.get(run_id, {})
    ]
    label = "balanced accuracy" if balanced else "accuracy"
    title = f"Finetunes: validation {label} per epoch"
    if len(run_ids) > len(ids):
        title += f" (first {len(ids)} of {len(run_ids)})"
    return svg.line_chart(lines, title=title, y_label=label, percent=True)
