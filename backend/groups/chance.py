"""Chance level of a study's metric on its test set, and whether an arm is no better.

Two classifiers that learnt nothing, from the test set's class counts:
- the majority-class predictor (always the most common test class);
- the uniform predictor (each class with probability 1/K; its expected score).
Accuracy: the majority share and 1/K. Balanced accuracy: 1/K for both. Macro-F1: the
majority class's F1 over K, and the mean over classes of 2·p_c·(1/K) / (p_c + 1/K).
Recall of the rarest classes: 0 and 1/K.

An arm is at chance when every one of its finished runs scores at most the higher of the
two plus the noise margin: the larger of two binomial standard errors of that score on
this test set, and a tenth of the way from it to a perfect score (so a model a few points
above chance on a large test set, which has learnt next to nothing, counts as at chance).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from jobspec import ablations

STANDARD_ERRORS = 2  # the noise margin: this many binomial standard errors, at least
SHARE_OF_RANGE = 0.1  # ... or this share of the way from chance to a perfect score


def levels(metric: str, test_counts: Mapping[str, int]) -> dict:
    """What the two know-nothing predictors score (fractions), by name; {} without counts."""
    present = {name: n for name, n in test_counts.items() if n > 0}
    total = sum(present.values())
    if not present:
        return {}
    k = len(present)
    shares = [n / total for n in present.values()]
    top = max(shares)
    if metric == "accuracy":
        return {"majority": top, "uniform": 1 / k}
    if metric == "balanced_accuracy":
        return {"majority": 1 / k, "uniform": 1 / k}
    if metric == "macro_f1":
        uniform = sum(2 * p / k / (p + 1 / k) for p in shares) / k
        return {"majority": 2 * top / (1 + top) / k, "uniform": uniform}
    if metric == "minority_recall":
        return {"majority": 0.0, "uniform": 1 / k}
    raise KeyError(f"unknown study metric {metric!r} (known: {', '.join(ablations.STUDY_METRICS)})")


def standard_error(
    metric: str, level: float, test_counts: Mapping[str, int], train_counts: Mapping[str, int]
) -> float:
    """A binomial standard error of the score at `level` on this test set: over all images
    for accuracy, else of a mean of per-class rates (the rarest classes' for their recall)."""
    present = {name: n for name, n in test_counts.items() if n > 0}
    variance = level * (1 - level)
    if metric == "accuracy":
        return math.sqrt(variance / sum(present.values()))
    classes = list(present)
    if metric == "minority_recall":
        rare = [c for c in ablations.rarest_classes(dict(train_counts)) if c in present]
        classes = rare or classes
    return math.sqrt(sum(variance / present[c] for c in classes)) / len(classes)


def bar(
    metric: str, test_counts: Mapping[str, int], train_counts: Mapping[str, int]
) -> dict | None:
    """The chance levels, the noise margin and the score at or under which a run is at
    chance, all in points; None when the test set's class counts are unknown."""
    found = levels(metric, test_counts)
    if not found:
        return None
    level = max(found.values())
    se = standard_error(metric, level, test_counts, train_counts)
    margin = max(STANDARD_ERRORS * se, SHARE_OF_RANGE * (1 - level))
    return {
        "majority": 100 * found["majority"],
        "uniform": 100 * found["uniform"],
        "margin": 100 * margin,
        "bar": 100 * (level + margin),
        "test_images": sum(n for n in test_counts.values() if n > 0),
        "classes": sum(1 for n in test_counts.values() if n > 0),
    }


def resolution(
    metric: str, test_counts: Mapping[str, int], train_counts: Mapping[str, int]
) -> float | None:
    """The coarsest step (in points) one test image moves the metric on this test set: 1/N
    for accuracy; for a mean of per-class rates (balanced accuracy, the rarest classes'
    recall) 1 / (classes averaged · images of the smallest of them); macro-F1 is read on
    balanced accuracy's grid (one image moves one class's F1 by about its recall's step).
    None when the test set's class counts are unknown."""
    present = {name: n for name, n in test_counts.items() if n > 0}
    if not present:
        return None
    if metric == "accuracy":
        return 100 / sum(present.values())
    classes = list(present)
    if metric == "minority_recall":
        rare = [c for c in ablations.rarest_classes(dict(train_counts)) if c in present]
        classes = rare or classes
    return 100 / (len(classes) * min(present[c] for c in classes))


def at_chance(values: Iterable[float], limit: dict | None) -> bool:
    """Whether an arm's finished runs (scores in points) all score at most the bar; an arm
    without any finished run is not judged."""
    scores = list(values)
    return limit is not None and bool(scores) and max(scores) <= limit["bar"]


def rule() -> str:
    """How the chance guard decides, said on the page."""
    return (
        "Chance level: what a classifier that learnt nothing scores on this test set, from "
        "its class counts: always predicting the most common class, and guessing each of "
        "the K classes with probability 1/K. An arm is at chance when every finished run "
        f"scores at most the higher of the two plus a noise margin: {STANDARD_ERRORS} "
        "binomial standard errors of that score on this test set, or a tenth of the way "
        "from it to a perfect score if that is more. When both arms are, no effect size, "
        "power or seed count is computed."
    )
