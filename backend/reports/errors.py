"""Look at the errors: which test images a finetune put in one confusion-matrix cell, with
their predicted probabilities, and per class its most confident mistakes.

Reads the run's predictions.npz (predictions and, since they were stored, probabilities)
and the data set's test labels; the images themselves come from
/api/datasets/{name}/test-images/{index}.png.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from backend import plotting
from backend.datasets import listing
from backend.runs import detail
from jobspec.text import CLASS_NAME, shown
from store.datasets import service as datasets_service
from store.errors import InvalidRequest, NotFound
from store.runs import service as runs_service
from store.settings import get_settings

TOP_CLASSES = 3  # the classes listed under each image, most probable first
CELL_PAGE = 48  # images of one confusion-matrix cell per page (the run page's default)
MAX_CELL_PAGE = 200  # the most one answer holds
MAX_OFFSET = 10_000_000  # beyond any test set's size


@dataclass(frozen=True)
class Predictions:
    """A finetune's test-set predictions beside the true labels."""

    predicted: np.ndarray  # (n,) class index
    probabilities: np.ndarray | None  # (n, classes), None for runs that did not store them
    true: np.ndarray  # (n,) class index
    class_names: list[str]
    dataset: str


def load(session: Session, run_id: int) -> Predictions:
    """The run's predictions and the data set's test labels, or NotFound."""
    run = runs_service.get_run(session, run_id)
    evaluation = (run.result or {}).get("evaluation") or {}
    data, _ = detail.artifact_bytes(session, run_id, "predictions.npz")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        predicted = np.asarray(npz["predictions"]).astype(np.int64).ravel()
        probabilities = np.asarray(npz["probabilities"]) if "probabilities" in npz.files else None
    record = listing.by_id(session, run.dataset_id)  # bounded, whatever the row holds
    path = datasets_service.fetch_to_cache(
        session=session, dataset_id=run.dataset_id, cache_dir=get_settings().cache_dir
    )
    with np.load(path, allow_pickle=False) as npz:
        true = np.asarray(npz["y_test"]).astype(np.int64).ravel()
    if len(true) != len(predicted) or (
        probabilities is not None and probabilities.shape[0] != len(true)
    ):
        raise NotFound("predictions matching the test set of run", run_id)
    if evaluation.get("class_names"):
        names = detail.class_names(evaluation)
    else:  # a data set row too long to read whole lists its first names only: the rest by number
        names = [shown(n, limit=CLASS_NAME.max_chars) for n in record.class_names]
        names += [str(i) for i in range(len(names), record.n_classes)]
    return Predictions(predicted, probabilities, true, names, record.name)


def _class(p: Predictions, field: str, index: int) -> int:
    if not 0 <= index < len(p.class_names):
        raise InvalidRequest(field, f"class {index} does not exist (0 to {len(p.class_names) - 1})")
    return index


def _item(p: Predictions, index: int) -> dict:
    """One test image: its index, true and predicted class, and the probabilities."""
    item = {"index": int(index), "true": int(p.true[index]), "predicted": int(p.predicted[index])}
    if p.probabilities is None:
        return {**item, "p_predicted": None, "p_true": None, "top": []}
    row = p.probabilities[index]
    top = np.argsort(-row, kind="stable")[:TOP_CLASSES]
    return {
        **item,
        "p_predicted": float(row[item["predicted"]]),
        "p_true": float(row[item["true"]]),
        "top": [{"class": int(c), "name": p.class_names[c], "p": float(row[c])} for c in top],
    }


def _most_confident(p: Predictions, indices: np.ndarray) -> np.ndarray:
    """The indices ordered by the probability of their predicted class, highest first."""
    if p.probabilities is None or not len(indices):
        return indices
    confidence = p.probabilities[indices, p.predicted[indices]]
    return indices[np.argsort(-confidence, kind="stable")]


def cell(
    *, session: Session, run_id: int, true: int, pred: int, limit: int, offset: int = 0
) -> dict:
    """The test images of class `true` predicted as `pred`, most confident first: `limit`
    of them from `offset`, with the cell's total (a page past the end is empty)."""
    p = load(session, run_id)
    true, pred = _class(p, "true", true), _class(p, "pred", pred)
    hits = np.flatnonzero((p.true == true) & (p.predicted == pred))
    chosen = _most_confident(p, hits)[offset : offset + limit]
    return {
        "run_id": run_id,
        "dataset": p.dataset,
        "true": {"index": true, "name": p.class_names[true]},
        "pred": {"index": pred, "name": p.class_names[pred]},
        "total": int(len(hits)),
        "offset": offset,
        "limit": limit,
        "has_probabilities": p.probabilities is not None,
        "items": [_item(p, i) for i in chosen],
        "class_names": p.class_names,
    }


def worst_classes(p: Predictions, limit: int = plotting.MAX_HEATMAP_CLASSES) -> list[int]:
    """plotting.heatmap_classes of the predictions' confusion matrix, counted without the
    matrix (n x n: 8 GB for 30,000 classes): a class's errors are the test images of it
    predicted as another, plus those of others predicted as it."""
    n = len(p.class_names)
    if n <= limit:
        return list(range(n))
    known = (p.true >= 0) & (p.true < n) & (p.predicted >= 0) & (p.predicted < n)
    wrong = known & (p.true != p.predicted)
    errors = np.bincount(p.true[wrong], minlength=n) + np.bincount(p.predicted[wrong], minlength=n)
    worst = np.lexsort((np.arange(n), -errors))[:limit]  # most errors first, then class order
    return sorted(int(c) for c in worst)


def mistakes(*, session: Session, run_id: int, per_class: int) -> dict:
    """Per true class (those the confusion heatmap shows), its most confident mistakes."""
    p = load(session, run_id)
    classes = []
    for c in worst_classes(p):
        wrong = np.flatnonzero((p.true == c) & (p.predicted != c))
        chosen = _most_confident(p, wrong)[:per_class]
        classes.append(
            {
                "index": int(c),
                "name": p.class_names[c],
                "errors": int(len(wrong)),
                "items": [_item(p, i) for i in chosen],
            }
        )
    return {
        "run_id": run_id,
        "dataset": p.dataset,
        "has_probabilities": p.probabilities is not None,
        "classes": classes,
        "class_names": p.class_names,
    }
