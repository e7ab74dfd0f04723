"""The ML core stays pure, and job parameters are validated before any work."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from jobspec.params import FinetuneConfig, PretrainConfig, StageConfig, TuneConfig
from tests.stack import REPO_ROOT
from worker.ml.evaluate import score

FORBIDDEN = ("fastapi", "starlette", "celery", "kombu", "sqlalchemy", "backend")


def test_worker_ml_imports_no_web_queue_or_sql_framework():
    code = (
        "import pkgutil, importlib, sys, worker.ml as ml\n"
        "for m in pkgutil.walk_packages(ml.__path__, 'worker.ml.'):\n"
        "    importlib.import_module(m.name)\n"
        f"print([name for name in {FORBIDDEN!r} if name in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


# TensorFlow is not fork-safe and costs seconds: the process that forks the pool stays free
# of it, and of the web's frameworks.
MAIN_PROCESS_FORBIDDEN = (
    "tensorflow", "keras", "fastapi", "starlette", "jinja2", "plotly", "backend",
)  # fmt: skip


def _run_python(code: str, env: dict | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return out.stdout.strip().splitlines()[-1]


def test_the_celery_main_process_imports_no_keras_or_web_framework():
    code = (
        "import sys, worker.celery_app, worker.tasks\n"
        f"print([name for name in {MAIN_PROCESS_FORBIDDEN!r} if name in sys.modules])\n"
    )
    assert _run_python(code) == "[]"


def test_the_pool_child_imports_keras_once_when_it_starts(tmp_path):
    # What a forked pool child runs (worker_process_init), without the store upkeep thread.
    code = (
        "import sys\n"
        "from celery.signals import worker_process_init\n"
        "import worker.celery_app, worker.tasks\n"
        "from worker import liveness\n"
        "liveness.start_upkeep = lambda **kwargs: None\n"
        "before = 'tensorflow' in sys.modules or 'keras' in sys.modules\n"
        "worker_process_init.send(sender=None)\n"
        "keras = sys.modules.get('keras')\n"
        "import worker.jobs, worker.ml.training\n"
        "print(before, keras is not None, sys.modules['keras'] is keras)\n"
    )
    env = {**os.environ, "STACKLAB_DATA_DIR": str(tmp_path)}
    assert _run_python(code, env) == "False True True"


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
