"""The ML core stays pure, and job parameters are validated before any work."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from jobspec.params import FinetuneConfig, PretrainConfig, StageConfig, TuneConfig
from tests.conftest import REPO_ROOT
from worker.ml.evaluate import score

FORBIDDEN = ("fastapi", "starlette", "celery", "kombu", "sqlalchemy", "backend")


def test_worker_ml_imports_no_web_queue_or_sql_framework():
    code = (
        "import pkgutil, importlib, sys, worker.ml as ml\n"
        "for m in pkgutil.iter_modules(ml.__path__):\n"
        "    importlib.import_module(f'worker.ml.{m.name}')\n"
        f"print([name for name in {FORBIDDEN!r} if name in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: StageConfig(kernel_size=4), "kernel_size"),
        (lambda: StageConfig(optimizer="adagrad"), "optimizer"),
        (lambda: StageConfig(epochs=0), "epochs"),
        (lambda: StageConfig(batch_size=-1), "batch_size"),
        (lambda: PretrainConfig(validation_fraction=1.0), "validation_fraction"),
        (lambda: TuneConfig(stage="ae04"), "stage"),
        (lambda: TuneConfig(kernel_sizes=[]), "kernel_sizes"),
        (lambda: FinetuneConfig(encoder="resnet"), "encoder"),
        (lambda: FinetuneConfig(early_stopping={"patience": -1}), "early_stopping.patience"),
        (lambda: FinetuneConfig(augmentation={"rotation_range": -5}), "rotation_range"),
        (lambda: FinetuneConfig(unknown=1), "unknown"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(factory, field):
    with pytest.raises(ValidationError) as err:
        factory()
    assert field.split(".")[-1] in str(err.value)


def test_inconsistent_finetune_options_are_refused():
    with pytest.raises(ValidationError, match="only for encoder='scratch'"):
        FinetuneConfig(encoder="stacked", architecture="single")
    with pytest.raises(ValidationError, match="freeze_encoder"):
        FinetuneConfig(encoder="scratch", freeze_encoder=True)
    with pytest.raises(ValidationError, match="learning_rate_min"):
        TuneConfig(learning_rate_min=0.1, learning_rate_max=0.01)


def test_defaults_follow_the_seed():
    config = FinetuneConfig()
    assert (config.encoder, config.model_architecture, config.augment) == (
        "stacked",
        "stacked",
        False,
    )
    assert StageConfig(optimizer="sgd").lr == 0.01
    assert PretrainConfig(ae02={"kernel_size": 5}).kernel_sizes == (3, 5, 3)


def test_scores_match_a_hand_computed_example():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 2, 0])
    probabilities = np.eye(3)[predicted]
    result = score(y_true, probabilities, ("a", "b", "c"))
    assert result.accuracy == pytest.approx(6 / 8)
    assert result.balanced_accuracy == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    assert result.per_class["a"]["precision"] == pytest.approx(3 / 4)
    assert result.per_class["b"]["recall"] == pytest.approx(1.0)
    assert result.confusion_matrix.tolist() == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
