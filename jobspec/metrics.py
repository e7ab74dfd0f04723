"""What each metric a job logs means: its goal, unit, label and chart panel.

Stored keys are "<stage>/<name>" ("ae01/val_loss", "trial-3/val_loss", "finetune/accuracy");
Keras names a validation metric "val_<name>". `metric()` strips both explicitly, so a rule
is written once per metric name, never as a substring guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Goal = Literal["min", "max"]
VALIDATION_PREFIX = "val_"


@dataclass(frozen=True)
class Metric:
    """One metric name: whether lower is better, its unit, a short label, its chart panel."""

    name: str
    goal: Goal
    label: str
    unit: str = ""
    panel: str | None = None  # "loss", "accuracy", "time", "throughput", "optimizer"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("loss", "min", "loss", panel="loss"),
        Metric("accuracy", "max", "acc", unit="fraction", panel="accuracy"),
        # Mean recall over classes: chance is 1/classes however imbalanced the data.
        Metric("balanced_accuracy", "max", "balanced acc", unit="fraction", panel="accuracy"),
        Metric("macro_f1", "max", "macro F1", unit="fraction", panel="accuracy"),
        Metric("epoch_seconds", "min", "epoch time", unit="s", panel="time"),
        Metric("images_per_sec", "max", "images/s", unit="images/s", panel="throughput"),
        Metric("learning_rate", "max", "learning rate", panel="optimizer"),
        Metric("lr", "max", "learning rate", panel="optimizer"),
    )
}


def split_key(key: str) -> tuple[str | None, str]:
    """'ae01/val_loss' -> ('ae01', 'val_loss'); 'trial-3/loss' -> ('trial-3', 'loss');
    a bare name has no stage."""
    stage, _, name = key.rpartition("/")
    return (stage or None), name


def metric(key: str) -> Metric:
    """The metric of a stored key or a bare name; validation metrics share their base's goal
    and panel. A name not registered is maximised and charted nowhere."""
    _, name = split_key(key)
    base = name.removeprefix(VALIDATION_PREFIX)
    known = METRICS.get(base) or Metric(base, "max", base.replace("_", " "))
    if base == name:
        return known
    return Metric(name, known.goal, f"val {known.label}", known.unit, known.panel)


def goal_of(key: str) -> Goal:
    """Whether a key's best value is its lowest ("min") or highest ("max")."""
    return metric(key).goal
