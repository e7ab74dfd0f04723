"""The pure half of the probe stage (worker/ml/probe.py): samples within a budget, the
linear probe and k-NN scores of features, and their 2-D PCA. numpy and scikit-learn only.

The linear probe is scikit-learn's multinomial LogisticRegression (C = PROBE_C, lbfgs, at
most PROBE_MAX_ITER iterations) on features standardized with the training part's mean and
sd; k-NN takes the KNN_K nearest training images by Euclidean distance on the same
standardized features and a plain majority vote (KNeighborsClassifier: a tie goes to the
lowest class). Balanced accuracy is the mean recall over the classes present.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no py.typed

KNN_K = 10
PROBE_C = 1.0
PROBE_MAX_ITER = 300
# One BLAS thread: the fits are small, and beside a worker's own threads more of them
# oversubscribe the cores (lbfgs ran 18x slower with two threads on a loaded 2-core box).
BLAS_THREADS = 1
TRAIN, VALIDATION, TEST = "train", "validation", "test"


@dataclass
class Parts:
    """The images probed (a capped sample of each part) and their labels."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    available: dict[str, int]


def sample_indices(n: int, cap: int, seed: int) -> np.ndarray:
    """All of range(n), or a fixed random `cap` of them in ascending order."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def capped_parts(parts: dict[str, tuple[np.ndarray, np.ndarray]], cap: int, seed: int) -> Parts:
    """Each part's images and labels, at most `cap` of each (a seeded sample)."""
    xs, ys, available = {}, {}, {}
    for offset, (name, (x, y)) in enumerate(parts.items()):
        keep = sample_indices(len(y), cap, seed + offset)
        xs[name], ys[name], available[name] = x[keep], np.asarray(y)[keep], len(y)
    return Parts(xs, ys, available)


def score(
    features: dict[str, np.ndarray], labels: dict[str, np.ndarray], *, k: int = KNN_K
) -> dict[str, float]:
    """Linear-probe and k-NN accuracy and balanced accuracy on the validation part
    ("val_" names) and the test set, both fitted on the training part's features."""
    if len(np.unique(labels[TRAIN])) < 2:
        return {}  # nothing to tell apart
    with threadpool_limits(limits=BLAS_THREADS):
        return _score(features, labels, k)


def _score(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], k: int) -> dict:
    scaler = StandardScaler().fit(features[TRAIN])
    train = scaler.transform(features[TRAIN])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        linear = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER).fit(train, labels[TRAIN])
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train))).fit(train, labels[TRAIN])
    scores: dict[str, float] = {}
    for part, prefix in ((VALIDATION, "val_"), (TEST, "")):
        if len(labels.get(part, ())) == 0:
            continue
        x = scaler.transform(features[part])
        for name, model in (("probe", linear), ("knn", knn)):
            predicted = model.predict(x)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a class never predicted
                balanced = balanced_accuracy_score(labels[part], predicted)
            scores[f"{prefix}{name}_accuracy"] = float(accuracy_score(labels[part], predicted))
            scores[f"{prefix}{name}_balanced_accuracy"] = float(balanced)
    return scores


def project(
    train: np.ndarray, test: np.ndarray, labels: np.ndarray, *, cap: int, seed: int
) -> dict | None:
    """Test features (standardized as the training part's) on their first two principal
    components, for at most `cap` test images; None when there are too few."""
    keep = sample_indices(len(labels), cap, seed)
    if len(keep) < 3 or test.shape[1] < 2:
        return None
    with threadpool_limits(limits=BLAS_THREADS):
        points = StandardScaler().fit(train).transform(test[keep])
        pca = PCA(n_components=2, svd_solver="full").fit(points)
    xy = pca.transform(points)
    return {
        "x": [round(float(v), 4) for v in xy[:, 0]],
        "y": [round(float(v), 4) for v in xy[:, 1]],
        "label": [int(v) for v in labels[keep]],
        # NaN where the features do not vary at all (every unit of a depth dead)
        "explained": [float(v) if np.isfinite(v) else None for v in pca.explained_variance_ratio_],
    }
