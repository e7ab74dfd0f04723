"""Issue 23's rules for studies (jobspec/ablations.py): the rarest classes with ties, the
stopping rule a study fixes at launch, and the default metric by the test set's counts."""

from __future__ import annotations

import pytest

from jobspec import ablations
from jobspec.params import FinetuneConfig

BASE = FinetuneConfig(encoder="stacked", epochs=3).model_dump(mode="json")
CONTEXT = ablations.Context(parent_kernel_sizes=(3, 5, 7))
NAMES = [f"c{i}" for i in range(10)]


def _counts(*sizes: int) -> dict[str, int]:
    return dict(zip(NAMES, sizes, strict=False))


# --- point 2: the rarest quarter, ceil, ties at the boundary in -----------------------------


@pytest.mark.parametrize(
    ("sizes", "rare"),
    [
        # 10 classes: k = ceil(2.5) = 3 (round() gave 2, half to even)
        ((500, 450, 400, 350, 300, 250, 200, 150, 100, 50), ["c9", "c8", "c7"]),
        # the data: 5 classes with 20 images tie at the boundary: all 5 are in,
        # whatever their folder order
        ((20, 100, 20, 100, 20, 100, 20, 100, 20, 100), ["c0", "c2", "c4", "c6", "c8"]),
        ((100, 100, 100, 100, 100, 100, 100, 100, 100, 100), NAMES),  # balanced: all tie
        ((30, 10, 10, 40), ["c1", "c2"]),  # k = 1, tied with another
        ((30, 10, 20, 40), ["c1"]),
        # demo-tiny-imbalanced: round(2.5) = 2 kept dots and diagonal, dropping checker, which
        # has as few images as diagonal
        ((12, 10, 8, 7, 6, 5, 4, 3, 3, 2), ["c9", "c7", "c8"]),
        ((5,), ["c0"]),
        ((50, 0, 50, 50, 50), ["c1", "c0", "c2", "c3", "c4"]),  # k = 2: the 0, then every 50
    ],
)
def test_the_rarest_classes_are_a_ceiled_quarter_with_boundary_ties(sizes, rare):
    assert ablations.rarest_classes(_counts(*sizes)) == rare


def test_minority_recall_averages_every_tied_rare_class():
    counts = _counts(20, 100, 20, 100, 20, 100, 20, 100, 20, 100)
    recalls = [0.1, 0.9, 0.2, 0.9, 0.3, 0.9, 0.2, 0.9, 0.2, 0.9]
    evaluation = {
        "per_class": {
            n: {"recall": r, "f1": r, "support": 10} for n, r in zip(NAMES, recalls, strict=True)
        }
    }
    # the five classes with 20 images: (0.1 + 0.2 + 0.3 + 0.2 + 0.2) / 5
    assert ablations.metric_value("minority_recall", evaluation, counts) == pytest.approx(0.2)
    assert "ceil(classes x 0.25)" in ablations.RAREST_RULE


# --- point 7: the study's metric is what early stopping watches ------------------------------


@pytest.mark.parametrize(
    ("metric", "monitor"),
    [
        ("accuracy", "val_accuracy"),
        ("balanced_accuracy", "val_balanced_accuracy"),
        ("macro_f1", "val_macro_f1"),
        ("minority_recall", "val_balanced_accuracy"),
    ],
)
@pytest.mark.parametrize("factor", list(ablations.FACTORS))
def test_by_default_both_arms_stop_on_the_studys_metric(factor, metric, monitor):
    study = ablations.factor(factor)
    shared = study.shared(BASE, metric)  # at launch: stored as the study's base
    for arm in study.arms:
        params = study.params(shared, arm.name, CONTEXT)  # also what add_seeds makes
        config = FinetuneConfig(**params)
        assert config.early_stopping.monitor == monitor
        assert config.early_stopping.mode == "max"
    rule = ablations.stopping_rule(metric, shared)
    assert rule["monitor"] == monitor
    assert rule["matches"] == (metric != "minority_recall")


def test_a_monitor_chosen_apart_from_the_metric_is_kept_and_named_a_confound():
    chosen = {**BASE, "early_stopping": {**BASE["early_stopping"], "monitor": "val_macro_f1"}}
    shared = ablations.factor("pretraining").shared(chosen, "balanced_accuracy")
    assert shared["early_stopping"]["monitor"] == "val_macro_f1"
    rule = ablations.stopping_rule("balanced_accuracy", shared)
    assert not rule["matches"]
    assert rule["confound"].startswith("Early stopping watched val_macro_f1 while the study")
    # a study launched before the rule: stopped on val_loss, judged on balanced accuracy
    old = ablations.stopping_rule("balanced_accuracy", BASE)
    assert old["monitor"] == "val_loss" and "balanced accuracy" in old["confound"]
    unknown = ablations.stopping_rule("accuracy", {})  # kept no early stopping settings
    assert unknown["matches"] is None and unknown["confound"] is None


# --- point 9: the default metric by the test set ----------------------------------------------


def test_the_default_metric_follows_the_test_sets_balance():
    imbalanced_train = _counts(500, 50)
    balanced_test = _counts(100, 100)
    # the case: imbalanced training data, balanced test set: the two scores are one
    assert ablations.default_metric(imbalanced_train, balanced_test) == "accuracy"
    assert ablations.same_as_accuracy(balanced_test)
    assert ablations.default_metric(_counts(100, 100), _counts(100, 20)) == "balanced_accuracy"
    assert not ablations.same_as_accuracy(_counts(100, 99))
    assert ablations.same_as_accuracy(_counts(100, 0, 100))  # an empty class does not count
    assert ablations.default_metric(imbalanced_train) == "balanced_accuracy"  # no test counts
