"""Factory-made experiments for the report, notes and errors tests: a pretrain whose result
has the reconstruction yardsticks and split, tunes around it, finetunes with known
predictions and probabilities, and an ablation study among them."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sqlalchemy import update

from store.db import session_scope
from store.runs.models import Run
from store.timeutil import utcnow
from tests.web.factories import (
    demo_test_labels,
    evaluation_of,
    make_ablation,
    make_run,
    npz_bytes,
    reconstructions_npz,
)

HOSTILE = '<script>alert("x")</script>'
SPLIT = {"seed": 0, "fraction": 0.1, "n_train": 54, "n_val": 6, "fingerprint": "f" * 8 + "0" * 56}


def pretrain_result(*, mse: tuple[float, float, float] = (0.046, 0.02, 0.03)) -> dict:
    """A pretrain's result as the worker stores it, yardsticks included."""
    stages = {
        stage: {
            "epochs_run": 2,
            "cancelled": False,
            "seconds": 3.5,
            "best_epoch": 2,
            "best_value": 0.05,
            "final": {"loss": 0.04, "val_loss": 0.05},
        }
        for stage in ("ae01", "ae02", "ae03")
    }
    return {
        "stages": stages,
        "test_reconstruction_loss": mse[2],
        "trained_stages": list(stages),
        "decoder_output": "bn_relu",
        "reconstruction": {
            "stages": {
                "ae01": {"mse": mse[0], "psnr": 13.37, "zero_fraction": 0.375},
                "ae02": {"mse": mse[1], "psnr": 16.99, "zero_fraction": 0.0},
                "ae03": {"mse": mse[2], "psnr": 15.23, "zero_fraction": 0.01},
            },
            "baselines": {
                "image_mean_colour": {"mse": 0.0435, "psnr": 13.61},
                "dataset_mean_image": {"mse": 0.0612, "psnr": 12.13},
            },
        },
        "probe_errors": {"ae01": [0.01, 0.02, 0.03], "ae02": [0.011, 0.021, 0.031]},
        "split": dict(SPLIT),
    }


def make_pretrain(name: str = "exp-pretrain", *, notes: str | None = None, **kwargs) -> int:
    """A finished pretrain with curves, reconstructions and the new result keys."""
    run_id = make_run(
        "pretrain",
        "succeeded",
        name=name,
        params={"ae01": {"epochs": 2}, "ae02": {"epochs": 2}, "ae03": {"epochs": 2}},
        metrics={
            f"{s}/{k}": [0.09, 0.05] for s in ("ae01", "ae02", "ae03") for k in ("loss", "val_loss")
        },
        artifacts={"reconstructions.npz": reconstructions_npz(3)},
        result=pretrain_result(),
        **kwargs,
    )
    if notes is not None:
        set_notes(run_id, notes)
    return run_id


def set_notes(run_id: int, text: str | None) -> None:
    with session_scope() as session:
        session.get(Run, run_id).notes = text


def confidence(index: int, n_test: int) -> float:
    """The predicted class's probability of a mistaken image: 0.5 up to below 0.9."""
    return 0.5 + 0.4 * index / n_test


def known_predictions(n_test: int = 20, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, probabilities) for a seed-0 demo's test set: image i is right when i is
    even; an odd image is predicted one class up with probability confidence(i, n_test) (the
    higher its index, the more confident the mistake); the true class gets 0.1."""
    y = demo_test_labels(n_test)
    predicted = np.where(np.arange(n_test) % 2 == 0, y, (y + 1) % classes)
    probabilities = np.full((n_test, classes), 0.0, dtype=np.float32)
    for i in range(n_test):
        if predicted[i] == y[i]:
            probabilities[i, y[i]] = 0.9
        else:
            probabilities[i, predicted[i]] = confidence(i, n_test)
            probabilities[i, y[i]] = 0.1
        rest = 1.0 - probabilities[i].sum()
        others = [c for c in range(classes) if probabilities[i, c] == 0]
        probabilities[i, others] = rest / len(others)
    return predicted, probabilities


def make_finetune(
    parent: int | None, *, name: str = "exp-finetune", n_test: int = 20, **kwargs
) -> int:
    """A finished finetune with known predictions and probabilities, stopped early at epoch
    3 of 5 keeping epoch 2, with a split warning. n_test: its data set's (a seed-0 demo)."""
    from worker.ml.datasets.demo import CLASS_NAMES

    predicted, probabilities = known_predictions(n_test)
    evaluation = evaluation_of(demo_test_labels(n_test), predicted, list(CLASS_NAMES))
    training = {
        "epochs_run": 3,
        "epochs_planned": 5,
        "best_epoch": 2,
        "best_value": 0.5,
        "monitor": "val_balanced_accuracy",
        "stopped_early": True,
        "restored_best_weights": True,
        "final": {"accuracy": 0.8},
        "warnings": ["The encoder was pretrained on another train/validation split."],
    }
    return make_run(
        "finetune",
        "succeeded",
        name=name,
        parent_run_id=parent,
        params={"epochs": 5, "augment": True, "class_weights": True, "seed": 3},
        metrics={"finetune/val_balanced_accuracy": [0.3, 0.5, 0.45]},
        artifacts={
            "predictions.npz": npz_bytes(predictions=predicted, probabilities=probabilities)
        },
        result={"training": training, "evaluation": evaluation, "split": dict(SPLIT)},
        **kwargs,
    )


def adopt(group: int, parent: int) -> None:
    """Make a study's finetunes use the pretrain (factory studies have no parent)."""
    with session_scope() as session:
        session.execute(update(Run).where(Run.group_id == group).values(parent_run_id=parent))


def make_experiment() -> dict:
    """A tune before the pretrain, the pretrain (hostile notes), a tune on it, a finetune
    of it with notes, and an augmentation study on it."""
    now = utcnow()
    before = make_run(
        "tune",
        name="tune-before",
        created_at=now - timedelta(hours=2),
        result={"best_params": {"kernel_size": 5}, "best_value": 0.04, "trials": 3},
    )
    pretrain = make_pretrain(
        notes=f"## Findings\n\n{HOSTILE} and [a link](https://example.org)",
        created_at=now - timedelta(hours=1),
    )
    child_tune = make_run(
        "tune", name="tune-child", parent_run_id=pretrain, params={"stage": "ae02"}
    )
    finetune = make_finetune(pretrain)
    set_notes(finetune, "finetune *notes*")
    group = make_ablation(
        "augmentation", {0: (12, 16), 1: (13, 16), 2: (12, 17)}, name="aug study <i>"
    )
    adopt(group, pretrain)
    return {
        "pretrain": pretrain,
        "tune_before": before,
        "tune_child": child_tune,
        "finetune": finetune,
        "group": group,
    }
