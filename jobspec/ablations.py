"""Ablation studies: one factor of a finetune switched between two arms, over seeds.

Each factor names its two arms (a baseline and a treatment) and how each changes the
shared finetune parameters; every other setting is shared. The arms of one seed share the
split (one split seed for the whole study), the initialisation where it applies (the same
seed builds the same head) and the order of the training data (the seed orders it).

Also here: the metrics a study can be judged by, computed from a run's stored test
evaluation, and which metric is the default for a data set. Pure: no Keras, SQL or web.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jobspec.builtin_kinds import FINETUNE
from jobspec.stages import STAGES

RUN_KIND = FINETUNE.name  # every arm of a study is a run of this kind

# The kind of a study's run group; studies made before ablations existed have the legacy one.
GROUP_KIND = "ablation_study"
LEGACY_GROUP_KIND = "augmentation_study"
GROUP_KINDS = (GROUP_KIND, LEGACY_GROUP_KIND)
# The largest over the smallest training class above which data counts as imbalanced.
IMBALANCE_RATIO = 1.5
# "Rarest classes": this share of the classes with the fewest training images (rarest_classes).
RAREST_SHARE = 0.25
RAREST_RULE = (
    "the rarest quarter of the classes: the k = ceil(classes x 0.25) with the fewest training "
    "images, and every class tied with the k-th fewest"
)
COMPARABLE_MONITOR = "val_balanced_accuracy"
DEFAULT_MONITOR = "val_loss"  # EarlyStoppingConfig's default: a study swaps it (stopping_monitor)
STACK = "-".join(stage.upper() for stage in STAGES)
# A finetune's parameters as JSON (what a run stores), which the arms change.
Params = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What an arm may need besides the shared parameters."""

    parent_kernel_sizes: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Arm:
    """One side of a factor: its short name, its label, and its changes to the shared params."""

    name: str
    label: str
    apply: Callable[[Params, Context], Params]


@dataclass(frozen=True)
class Factor:
    """One question a study answers: does the treatment arm beat the baseline arm?"""

    name: str
    label: str
    question: str
    subject: str  # the verdict's subject: "<subject> helped"
    baseline: Arm
    treatment: Arm
    needs_parent: bool = True
    note: str = ""  # what the study changes besides the factor, said on its page

    @property
    def arms(self) -> tuple[Arm, Arm]:
        return (self.baseline, self.treatment)

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"{self.name} has no arm {name!r}")

    def shared(self, base: Params, metric: str | None = None) -> Params:
        """The parameters both arms share (before each arm's own change). With the study's
        metric (at launch), early stopping left at val_loss watches that metric instead, in
        both arms, so each arm keeps the epoch best by what the study judges; a monitor
        chosen otherwise is kept, and the page shows the confound (stopping_rule)."""
        stopping = dict(base.get("early_stopping") or {})
        monitor = stopping.get("monitor", DEFAULT_MONITOR)
        # The weighted arm trains on a weighted loss: plain val_loss would stop it for
        # favouring rare classes (val_accuracy too, unless accuracy is what is judged).
        weighted = self.name == "class_weights"
        unfair = ("val_accuracy",) if weighted else ()
        if metric is not None and monitor in (DEFAULT_MONITOR, *unfair):
            stopping["monitor"] = stopping_monitor(metric)
        elif weighted and monitor == DEFAULT_MONITOR:  # shared again without the metric
            stopping["monitor"] = COMPARABLE_MONITOR
        else:
            return dict(base)
        return {**base, "early_stopping": stopping}

    def params(self, base: Params, arm: str, context: Context) -> Params:
        """The full parameters of one arm."""
        return self.arm(arm).apply(self.shared(base), context)


def _set(**changes: Any) -> Callable[[Params, Context], Params]:
    return lambda base, context: {**base, **changes}


def _architecture(base: Params) -> str:
    """The classifier architecture both arms of a pretraining study build."""
    if base.get("encoder") == "scratch":
        return base.get("architecture") or "stacked"
    return base.get("encoder") or "stacked"


def _scratch(base: Params, context: Context) -> Params:
    out = {**base, "encoder": "scratch", "freeze_encoder": False}
    out["architecture"] = _architecture(base)
    if context.parent_kernel_sizes is not None:
        out["kernel_sizes"] = list(context.parent_kernel_sizes)
    return out


def _pretrained_encoder(base: Params, encoder: str) -> Params:
    """The shared params with a pretrained encoder (no scratch-only fields left over)."""
    out = {**base, "encoder": encoder}
    out.pop("architecture", None)
    out.pop("kernel_sizes", None)
    return out


def _pretrained(base: Params, context: Context) -> Params:
    return _pretrained_encoder(base, _architecture(base))


def _pretrained_as(encoder: str) -> Callable[[Params, Context], Params]:
    return lambda base, context: _pretrained_encoder(base, encoder)


FACTORS: dict[str, Factor] = {
    f.name: f
    for f in (
        Factor(
            "augmentation",
            "Augmentation",
            "Does data augmentation help?",
            "Augmentation",
            Arm("off", "augmentation off", _set(augment=False)),
            Arm("on", "augmentation on", _set(augment=True)),
            needs_parent=False,
        ),
        Factor(
            "pretraining",
            "Pretraining",
            "What does pretraining the encoder buy over training it from scratch?",
            "Pretraining",
            Arm("scratch", "from scratch", _scratch),
            Arm("pretrained", "pretrained", _pretrained),
            note="The scratch arm builds the same architecture with the pretrain's kernel sizes.",
        ),
        Factor(
            "encoder",
            "Encoder",
            "Does the stacked encoder (AE01-03) beat AE01's encoder alone?",
            "The stacked encoder",
            Arm("single", "single (AE01)", _pretrained_as("single")),
            Arm("stacked", f"stacked ({STACK})", _pretrained_as("stacked")),
        ),
        Factor(
            "class_weights",
            "Class weights",
            "Do class weights help on imbalanced data?",
            "Class weights",
            Arm("off", "unweighted loss", _set(class_weights=False)),
            Arm("on", "class-weighted loss", _set(class_weights=True)),
            needs_parent=False,
            note="Early stopping set to val_loss or val_accuracy watches the study's metric on "
            "validation instead (balanced accuracy for minority recall), in both arms: the "
            "weighted arm trains on a weighted loss, so plain val_loss would stop it early for "
            "favouring the rare classes.",
        ),
        Factor(
            "freeze_encoder",
            "Frozen encoder",
            "Does freezing the pretrained encoder (training only the head) help?",
            "Freezing the encoder",
            Arm("tuned", "encoder fine-tuned", _set(freeze_encoder=False)),
            Arm("frozen", "encoder frozen", _set(freeze_encoder=True)),
        ),
    )
}


def factor(name: str) -> Factor:
    """A factor by name; KeyError names the known ones."""
    try:
        return FACTORS[name]
    except KeyError:
        raise KeyError(f"unknown factor {name!r} (known: {', '.join(FACTORS)})") from None


# --- What a study is judged by. ---

STUDY_METRICS: dict[str, str] = {
    "accuracy": "test accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
    "minority_recall": "recall of the rarest classes",
}


def imbalanced(train_counts: dict[str, int]) -> bool:
    """Whether the largest training class exceeds the smallest non-empty one by the ratio."""
    sizes = [n for n in train_counts.values() if n > 0]
    return bool(sizes) and max(sizes) > IMBALANCE_RATIO * min(sizes)


def default_metric(
    train_counts: Mapping[str, int], test_counts: Mapping[str, int] | None = None
) -> str:
    """Balanced accuracy where it says more than accuracy: when the test set, where the
    study's scores are computed, is imbalanced. On a balanced test set the two are equal
    whatever the training data, so plain accuracy. Without test counts (older callers), the
    training counts decide."""
    counts = train_counts if test_counts is None else test_counts
    return "balanced_accuracy" if imbalanced(dict(counts)) else "accuracy"


def same_as_accuracy(test_counts: Mapping[str, int]) -> bool:
    """Whether balanced accuracy equals accuracy on this test set: every class with test
    images has as many (mean recall weighted by support is then the plain mean)."""
    sizes = {n for n in test_counts.values() if n > 0}
    return len(sizes) == 1


def rarest_classes(train_counts: Mapping[str, int]) -> list[str]:
    """The rarest classes (RAREST_RULE): k = ceil(classes x RAREST_SHARE), at least one, and
    every class whose training count is at most the k-th smallest, so ties at the boundary
    are all in (never broken by class order); rarest first, ties in the data set's order."""
    if not train_counts:
        return []
    k = max(1, math.ceil(round(len(train_counts) * RAREST_SHARE, 9)))  # 10 x 0.3 is 3, not 4
    boundary = sorted(train_counts.values())[k - 1]
    rare = [name for name, count in train_counts.items() if count <= boundary]
    return sorted(rare, key=lambda name: train_counts[name])  # stable


STOPPING_MONITORS: dict[str, str] = {
    "accuracy": "val_accuracy",
    "balanced_accuracy": "val_balanced_accuracy",
    "macro_f1": "val_macro_f1",
    # No per-epoch recall of the rarest classes is logged: the balanced score is nearest.
    "minority_recall": COMPARABLE_MONITOR,
}


def stopping_monitor(metric: str) -> str:
    """The validation score a study judged by `metric` stops on, in both arms."""
    return STOPPING_MONITORS[metric]


def stopping_rule(metric: str, base: Mapping[str, Any]) -> dict[str, Any]:
    """What a study's early stopping watched (fixed at launch in its shared params `base`)
    beside the metric it is judged by; `confound` says how they differ (None: they agree,
    or the study kept no early stopping settings, when `matches` is None)."""
    if "early_stopping" not in base:
        return {"metric": metric, "monitor": None, "matches": None, "confound": None}
    monitor = (base.get("early_stopping") or {}).get("monitor", DEFAULT_MONITOR)
    label = STUDY_METRICS[metric]
    confound = None
    if monitor != stopping_monitor(metric):
        confound = (
            f"Early stopping watched {monitor} while the study is judged by {label}: each arm "
            f"kept its best epoch by {monitor}, so the arms may differ in when they stopped "
            "as well as in the factor."
        )
    elif metric == "minority_recall":
        confound = (
            f"Early stopping watched {monitor}: no per-epoch validation score of the rarest "
            "classes is logged, so each arm kept its best epoch by the balanced score, not by "
            f"the {label}."
        )
    return {"metric": metric, "monitor": monitor, "matches": confound is None, "confound": confound}


def metric_value(
    metric: str, evaluation: Mapping[str, Any], train_counts: dict[str, int]
) -> float | None:
    """A study metric of one run from its stored test evaluation (a fraction), or None when
    the evaluation lacks what it needs. Classes absent from the test set are left out of
    the per-class means, as scikit-learn's balanced accuracy does."""
    if metric == "accuracy":
        return _float(evaluation.get("accuracy"))
    if metric == "balanced_accuracy":
        return _float(evaluation.get("balanced_accuracy"))
    per_class = evaluation.get("per_class") or {}
    present = {name: s for name, s in per_class.items() if s.get("support", 0) > 0}
    if not present:
        return None
    if metric == "macro_f1":
        return float(sum(s["f1"] for s in present.values())) / len(present)
    if metric == "minority_recall":
        rare = [name for name in rarest_classes(train_counts) if name in present]
        if not rare:
            return None
        return float(sum(present[name]["recall"] for name in rare)) / len(rare)
    raise KeyError(f"unknown study metric {metric!r} (known: {', '.join(STUDY_METRICS)})")


def _float(value: Any) -> float | None:  # a JSON number, or None
    return None if value is None else float(value)
