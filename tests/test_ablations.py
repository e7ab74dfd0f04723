"""Each ablation factor's two arms differ in that factor alone, and both are valid finetunes."""

from __future__ import annotations

import pytest

from jobspec import ablations
from jobspec.params import FinetuneConfig

BASE = FinetuneConfig(encoder="stacked", epochs=3).model_dump(mode="json")
CONTEXT = ablations.Context(parent_kernel_sizes=(3, 5, 7))
CHANGED = {  # the fields each factor may change between its arms
    "augmentation": {"augment"},
    "pretraining": {"encoder", "architecture", "kernel_sizes"},
    "encoder": {"encoder"},
    "class_weights": {"class_weights"},
    "freeze_encoder": {"freeze_encoder"},
}


@pytest.mark.parametrize("name", list(ablations.FACTORS))
def test_the_arms_differ_in_the_factor_alone(name):
    factor = ablations.factor(name)
    baseline, treatment = (
        FinetuneConfig(**factor.params(BASE, arm.name, CONTEXT)).model_dump(mode="json")
        for arm in factor.arms
    )
    differ = {key for key in baseline if baseline[key] != treatment[key]}
    assert differ and differ <= CHANGED[name], differ
    for shared in ("seed", "split_seed"):
        assert baseline[shared] == treatment[shared]


def test_the_scratch_arm_copies_the_pretrains_kernel_sizes():
    scratch = ablations.factor("pretraining").params(BASE, "scratch", CONTEXT)
    config = FinetuneConfig(**scratch)
    assert config.encoder == "scratch" and config.model_architecture == "stacked"
    assert config.scratch_kernel_sizes == (3, 5, 7)


def test_a_class_weights_study_watches_a_metric_both_arms_can_share():
    for arm in ("off", "on"):
        params = ablations.factor("class_weights").params(BASE, arm, CONTEXT)
        assert params["early_stopping"]["monitor"] == "val_balanced_accuracy"
    chosen = {**BASE, "early_stopping": {**BASE["early_stopping"], "monitor": "val_macro_f1"}}
    kept = ablations.factor("class_weights").params(chosen, "on", CONTEXT)
    assert kept["early_stopping"]["monitor"] == "val_macro_f1"  # a fair choice stays


def test_the_default_study_metric_follows_the_imbalance():
    assert ablations.default_metric({"a": 100, "b": 100}) == "accuracy"
    assert ablations.default_metric({"a": 100, "b": 20}) == "balanced_accuracy"
    evaluation = {
        "accuracy": 0.8,
        "balanced_accuracy": 0.6,
        "per_class": {
            "a": {"recall": 0.9, "f1": 0.85, "support": 10},
            "b": {"recall": 0.3, "f1": 0.4, "support": 10},
            "c": {"recall": 0.0, "f1": 0.0, "support": 0},  # absent from the test set
        },
    }
    counts = {"a": 100, "b": 20, "c": 50}
    assert ablations.metric_value("macro_f1", evaluation, counts) == pytest.approx(0.625)
    assert ablations.metric_value("minority_recall", evaluation, counts) == pytest.approx(0.3)
