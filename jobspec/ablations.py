"""Ablation studies: one factor of a finetune switched between two arms, over seeds.

Each factor names its two arms (a baseline and a treatment) and how each changes the
shared finetune parameters; every other setting is shared. The arms of one seed share the
split (one split seed for the whole study), the initialisation where it applies (the same
seed builds the same head) and the order of the training data (the seed orders it).

Also here: the metrics a study can be judged by, computed from a run's stored test
evaluation, and which metric is the default for a data set. Pure: no Keras, SQL or web.
"""

from __future__ import annotations

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
# "Rarest classes": this share of the classes with the fewest training images (at least one).
RAREST_SHARE = 0.25
COMPARABLE_MONITOR = "val_balanced_accuracy"
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

    def shared(self, base: Params) -> Params:
        """The parameters both arms share (before each arm's own change)."""
        if self.name == "class_weights":
            stopping = dict(base.get("early_stopping") or {})
            if stopping.get("monitor", "val_loss") in ("val_loss", "val_accuracy"):
                # The weighted arm trains on a weighted loss: plain val_loss / accuracy would
                # stop it for favouring rare classes. Both arms watch a balanced metric.
                stopping["monitor"] = COMPARABLE_MONITOR
            return {**base, "early_stopping": stopping}
        return dict(base)

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
            note="Early stopping set to val_loss or val_accuracy watches validation balanced "
            "accuracy instead, in both arms: the weighted arm trains on a weighted loss, so "
            "plain val_loss would stop it early for favouring the rare classes.",
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


def default_metric(train_counts: dict[str, int]) -> str:
    """Balanced accuracy on imbalanced training data, plain accuracy otherwise."""
    return "balanced_accuracy" if imbalanced(train_counts) else "accuracy"


def rarest_classes(train_counts: dict[str, int]) -> list[str]:
    """The RAREST_SHARE of classes with the fewest training images (at least one); ties
    keep the data set's class order."""
    k = max(1, round(len(train_counts) * RAREST_SHARE))
    order = sorted(train_counts, key=lambda name: train_counts[name])  # stable
    return order[:k]


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
