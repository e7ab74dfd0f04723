"""Test-set uncertainty of a study: a bootstrap over test images, nested within seeds.

The seed interval measures training randomness (initialisation, data order) on one fixed
test set. How much mean d would move on another test set of the same size is a second
source: each replicate draws the test set's images with replacement once, scores both
networks of every seed on that same draw (the seeds share one test set, so its luck is
shared too), and recomputes mean d over the seeds, which stay fixed. The 2.5th and 97.5th
percentiles of those means are the test-set interval; its sd, added in quadrature to the
seed interval's standard error, makes a combined interval (conservative: the seeds' spread
already holds part of the image-level noise). Neither covers the split: one fixed
train/validation split is used by every seed unless the study splits per seed.
Pure: arrays in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from backend.compare import stats

REPLICATES = 1000
CHUNK = 100  # replicates scored at once: CHUNK × test images weights in memory
SEED = 0  # the same draws every time: the page does not flicker between polls


def _stats():
    from scipy import stats as scipy_stats

    return scipy_stats


def scores(
    metric: str,
    weights: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: int,
    rare: Sequence[int] = (),
) -> np.ndarray:
    """The study metric (points) of one network on each weighted test set (a row of
    `weights`), as jobspec.ablations.metric_value reads it from an evaluation: classes
    absent from a draw are left out of the per-class means."""
    truth = np.eye(classes)[y_true]
    hits = truth * (y_pred == y_true)[:, None]
    predicted = weights @ np.eye(classes)[y_pred] if metric == "macro_f1" else None
    return _metric(metric, weights @ truth, weights @ hits, predicted, rare)


def _metric(
    metric: str,
    support: np.ndarray,
    right: np.ndarray,
    predicted: np.ndarray | None,
    rare: Sequence[int],
) -> np.ndarray:
    """The metric in points from per-class counts per replicate: (replicates, classes)."""
    if metric == "accuracy":
        return 100 * right.sum(axis=1) / support.sum(axis=1)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "macro_f1" and predicted is not None:
            per_class = 2 * right / (support + predicted)
        elif metric in ("balanced_accuracy", "minority_recall"):
            per_class = right / support
        else:
            raise KeyError(f"unknown study metric {metric!r}")
    if metric == "minority_recall":
        per_class, present = per_class[:, list(rare)], present[:, list(rare)]
    counted = np.where(present, per_class, 0.0).sum(axis=1)
    return 100 * counted / np.maximum(present.sum(axis=1), 1)


def mean_differences(
    metric: str,
    y_true: np.ndarray,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    classes: int,
    rare: Sequence[int] = (),
    replicates: int = REPLICATES,
) -> np.ndarray:
    """Mean d over seeds on each replicate's draw of the test images. Every count the
    metric needs (per class: images, right answers of each network, its predictions for
    macro-F1) is one column of a matrix, so a chunk of draws is one matrix product."""
    columns, features = _columns(metric, y_true, pairs, classes)
    # Images alike in every feature (class, who got them right) are interchangeable: drawing
    # N images with replacement is drawing N times from these kinds, multinomially.
    first, sizes = _kinds(features)
    kinds = columns[first]
    step = 2 if metric == "macro_f1" else 1
    rng = np.random.default_rng(SEED)
    out = []
    for start in range(0, replicates, CHUNK):
        size = min(CHUNK, replicates - start)
        counts = (_draw_counts(len(y_true), sizes, size, rng) @ kinds).astype(np.float64)
        split = np.split(counts, columns.shape[1] // classes, axis=1)
        support, arms = split[0], split[1:]
        scored = [
            _metric(metric, support, arms[i], arms[i + 1] if step == 2 else None, rare)
            for i in range(0, len(arms), step)
        ]
        out.append(np.mean([t - b for b, t in zip(scored[::2], scored[1::2], strict=True)], axis=0))
    return np.concatenate(out)


def _columns(
    metric: str, y_true: np.ndarray, pairs: Sequence[tuple[np.ndarray, np.ndarray]], classes: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per image: its class one-hot, then per network (baseline, treatment of each seed in
    turn) its right answer one-hot (and, for macro-F1, its prediction one-hot); and the
    features that decide that row."""
    eye = np.eye(classes, dtype=np.float32)
    truth = eye[y_true]
    networks = [p for pair in pairs for p in pair]
    blocks, features = [truth], [y_true]
    for predictions in networks:
        blocks.append(truth * (predictions == y_true)[:, None])
        features.append(predictions == y_true)
        if metric == "macro_f1":
            blocks.append(eye[predictions])
            features.append(predictions)
    return np.hstack(blocks), features


def _kinds(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Images alike in every feature are one kind: (an image of each kind, how many)."""
    code = np.zeros(len(features[0]), dtype=np.int64)
    for feature in features:  # mixed radix, renumbered after each step: no overflow
        values = np.asarray(feature, dtype=np.int64)
        _, code = np.unique(code * (int(values.max()) + 1) + values, return_inverse=True)
    _, first, sizes = np.unique(code, return_index=True, return_counts=True)
    return first, sizes


def _draw_counts(
    n_images: int, sizes: np.ndarray, replicates: int, rng: np.random.Generator
) -> np.ndarray:
    """How many images of each kind each replicate draws: (replicates, kinds)."""
    if len(sizes) * 4 > n_images:  # nearly every image its own kind: draw images
        kind_of = np.repeat(np.arange(len(sizes)), sizes)
        picks = kind_of[rng.integers(0, n_images, size=(replicates, n_images))]
        picks += np.arange(replicates)[:, None] * len(sizes)
        flat = np.bincount(picks.ravel(), minlength=replicates * len(sizes))
        return flat.reshape(replicates, len(sizes)).astype(np.float32)
    return rng.multinomial(n_images, sizes / n_images, size=replicates).astype(np.float32)


def interval(means: np.ndarray, diff: dict) -> dict:
    """The test-set interval from the replicates' mean d, and the combined interval with the
    seed interval's standard error (same centre: the observed mean d)."""
    low, high = np.percentile(means, [2.5, 97.5])
    sd = float(np.std(means, ddof=1))
    out = {
        "replicates": int(means.size),
        "low": float(low),
        "high": float(high),
        "sd": sd,
        "combined_low": None,
        "combined_high": None,
        "combined_outcome": None,
    }
    n, seed_sd = diff["n"], diff.get("sd_used")
    if diff.get("low") is None or seed_sd is None:
        return out
    se = math.sqrt(seed_sd**2 / n + sd**2)
    half = float(_stats().t.ppf(0.975, n - 1)) * se
    combined = {"low": diff["mean"] - half, "high": diff["mean"] + half}
    return {
        **out,
        "combined_low": combined["low"],
        "combined_high": combined["high"],
        "combined_outcome": stats.judge(combined),
    }
