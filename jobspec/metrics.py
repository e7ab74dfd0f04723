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
# Panels whose metrics say how good a model is: only these are ranked, bolded as "best" and
# summarised over seeds. Time, throughput and the optimizer's settings are not scores.
SCORE_PANELS = frozenset({"loss", "accuracy"})
# A "fraction" (accuracy, macro-F1...) is stored in 0..1 and shown everywhere as a percentage.
PERCENT_UNIT = "fraction"
# The panel of series sampled in time (seconds since the run started), never per epoch: the
# worker's memory, CPU and GPU. They are run samples (store.runs.samples), not metrics; no
# epoch stage may carry this name (runs before migration 0008 logged "system/<name>").
SAMPLED_PANEL = "system"


@dataclass(frozen=True)
class Metric:
    """One metric name: whether lower is better, its unit, a short label, its chart panel."""

    name: str
    goal: Goal
    label: str
    unit: str = ""
    panel: str | None = None  # "loss", "accuracy", "time", "throughput", "optimizer", "system"

    @property
    def scored(self) -> bool:
        """Whether the metric rates the model (a loss or an accuracy), not the run's speed."""
        return self.panel in SCORE_PANELS

    @property
    def sampled(self) -> bool:
        """Whether the metric is sampled in time (a run sample), never logged per epoch."""
        return self.panel == SAMPLED_PANEL

    @property
    def percent(self) -> bool:
        """Whether the value is a fraction shown as a percentage (0.384 -> 38.4%)."""
        return self.unit == PERCENT_UNIT

    @property
    def validation(self) -> bool:
        """Whether this is the validation twin of a training metric ("val_loss")."""
        return self.name.startswith(VALIDATION_PREFIX)

    @property
    def display_unit(self) -> str:
        """The unit as pages write it: "%" for fractions, else the stored unit."""
        return "%" if self.percent else self.unit


PROBE_METRICS = (
    Metric("probe_accuracy", "max", "linear-probe acc", unit=PERCENT_UNIT),
    Metric("probe_balanced_accuracy", "max", "linear-probe balanced acc", unit=PERCENT_UNIT),
    Metric("knn_accuracy", "max", "k-NN acc", unit=PERCENT_UNIT),
    Metric("knn_balanced_accuracy", "max", "k-NN balanced acc", unit=PERCENT_UNIT),
)

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
        # Sampled by the worker every few seconds: run samples against seconds, not epochs.
        Metric("rss_mb", "min", "process memory", unit="MiB", panel=SAMPLED_PANEL),
        Metric("cpu_percent", "min", "CPU", unit="% of a core", panel=SAMPLED_PANEL),
        Metric("gpu_util", "max", "GPU utilisation", unit="%", panel=SAMPLED_PANEL),
        Metric("gpu_mem_mb", "min", "GPU memory", unit="MiB", panel=SAMPLED_PANEL),
        # What the autoencoders learned (jobspec/learned.py): frozen features of an encoder
        # read by a linear probe or k-NN, on the test set ("val_" twins: the validation
        # part). Stored in the run's learned.json, never per epoch: no chart panel.
        *PROBE_METRICS,
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


def label_of(key: str) -> str:
    """A stored key for people: 'finetune/val_accuracy' -> 'finetune val acc',
    'ae01/epoch_seconds' -> 'ae01 epoch time (s)'."""
    stage, _ = split_key(key)
    known = metric(key)
    unit = known.display_unit
    text = f"{known.label} ({unit})" if unit and unit not in known.label else known.label
    return f"{stage} {text}" if stage else text


def is_scored(key: str) -> bool:
    """Whether a key's best value means a better model (see SCORE_PANELS)."""
    return metric(key).scored
