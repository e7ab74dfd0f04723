"""Test-set evaluation of a classifier: accuracy, balanced accuracy, per-class scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from sklearn import metrics as skm

from worker.ml import artifacts, figures
from worker.ml.datasets.dataset import Dataset
from worker.ml.pipeline import to_float


@dataclass
class Evaluation:
    """Scores of one model on one labelled set."""

    accuracy: float
    balanced_accuracy: float
    per_class: dict[str, dict[str, float]]
    confusion_matrix: np.ndarray  # rows: true class, columns: predicted
    predictions: np.ndarray
    probabilities: np.ndarray
    class_names: tuple[str, ...]

    def summary(self) -> dict:
        """JSON-able scores (predictions are saved separately)."""
        return {
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "per_class": self.per_class,
            "confusion_matrix": self.confusion_matrix.tolist(),
            "class_names": list(self.class_names),
        }


def predict_proba(model: keras.Model, x_uint8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for uint8 images, in batches."""
    out = [
        np.asarray(model.predict_on_batch(to_float(x_uint8[i : i + batch_size])), dtype="float32")
        for i in range(0, len(x_uint8), batch_size)
    ]
    return np.concatenate(out)


def score(y_true: np.ndarray, probabilities: np.ndarray, class_names) -> Evaluation:
    """All scores from labels and predicted probabilities."""
    labels = list(range(len(class_names)))
    predictions = probabilities.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, predictions, labels=labels, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return Evaluation(
        accuracy=float(skm.accuracy_score(y_true, predictions)),
        balanced_accuracy=float(skm.balanced_accuracy_score(y_true, predictions)),
        per_class=per_class,
        confusion_matrix=skm.confusion_matrix(y_true, predictions, labels=labels),
        predictions=predictions,
        probabilities=probabilities,
        class_names=tuple(class_names),
    )


def evaluate(model: keras.Model, dataset: Dataset) -> Evaluation:
    """Score a classifier on the data set's test split."""
    if model.output_shape[-1] != dataset.num_classes:
        raise ValueError(
            f"model predicts {model.output_shape[-1]} classes, data set {dataset.name!r} has "
            f"{dataset.num_classes}"
        )
    return score(dataset.y_test, predict_proba(model, dataset.x_test), dataset.class_names)


def export_evaluation(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """evaluation.json, predictions.npz and confusion_matrix.png in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = out_dir / "predictions.npz"
    np.savez_compressed(
        predictions,
        predictions=evaluation.predictions,
        probabilities=evaluation.probabilities,
    )
    return [
        artifacts.write_json(out_dir / "evaluation.json", evaluation.summary()),
        predictions,
        figures.confusion_matrix_png(
            evaluation.confusion_matrix, evaluation.class_names, out_dir / "confusion_matrix.png"
        ),
    ]


def evaluate_saved(model_path: Path, dataset: Dataset, out_dir: Path) -> tuple[Evaluation, list]:
    """Load a `.keras` classifier, score it, export the results."""
    evaluation = evaluate(artifacts.load_model(model_path), dataset)
    return evaluation, export_evaluation(evaluation, Path(out_dir))
