"""A deterministic synthetic 'demo' dataset: ten shape and texture classes, NumPy only."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from worker.ml.datasets.dataset import IMAGE_SHAPE, DataError, Dataset

CLASS_NAMES = (
    "circle", "square", "triangle", "cross", "ring",
    "stripes-h", "stripes-v", "diagonal", "checker", "dots",
)  # fmt: skip
SIZE = IMAGE_SHAPE[0]
# Nuisance ranges: where the pattern sits, its radius, texture period, tilt and pixel noise.
CENTRE = (10.0, 22.0)
RADIUS = (5.0, 10.0)
PERIOD = (2.0, 3.5)
TILT = 0.35  # radians either way; a 90-degree turn would make stripes-h into stripes-v
NOISE = (4.0, 20.0)

# A pattern maps rotated pixel offsets (u, v) from the centre, the shape radius s and the
# texture period p (all broadcastable to (k, 32, 32)) to a foreground mask.
Pattern = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _window(u: np.ndarray, v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The square patch a texture fills, so textures are objects with a position too."""
    return np.maximum(np.abs(u), np.abs(v)) <= 1.4 * s


def _stripes(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Alternating bands of width p along coordinate t."""
    return np.floor(t / p) % 2 == 0


PATTERNS: tuple[Pattern, ...] = (
    lambda u, v, s, p: np.hypot(u, v) <= s,
    lambda u, v, s, p: np.maximum(np.abs(u), np.abs(v)) <= 0.85 * s,
    lambda u, v, s, p: (v <= 0.7 * s) & (np.abs(u) <= 0.6 * (v + s)),
    lambda u, v, s, p: (
        (np.minimum(np.abs(u), np.abs(v)) <= 0.28 * s) & (np.maximum(np.abs(u), np.abs(v)) <= s)
    ),
    lambda u, v, s, p: (np.hypot(u, v) <= s) & (np.hypot(u, v) >= 0.6 * s),
    lambda u, v, s, p: _window(u, v, s) & _stripes(v, p),
    lambda u, v, s, p: _window(u, v, s) & _stripes(u, p),
    lambda u, v, s, p: _window(u, v, s) & _stripes((u + v) / np.sqrt(2), p),
    lambda u, v, s, p: _window(u, v, s) & (_stripes(u, p) ^ _stripes(v, p)),
    lambda u, v, s, p: _window(u, v, s) & (np.hypot(u % (2 * p) - p, v % (2 * p) - p) <= 0.55 * p),
)


def make_demo(
    *, seed: int = 0, n_train: int = 5000, n_test: int = 1000, imbalance: float | None = None
) -> Dataset:
    """Ten classes of jittered, coloured, noisy shapes and textures, identical for a seed.

    imbalance (0 < r <= 1) shrinks train class sizes geometrically so the last class has
    r times the first's; the test set stays balanced so accuracy remains comparable.
    Train and test draw from separate seed streams: the test set for a seed is the same
    whatever n_train or imbalance are, so balanced and imbalanced runs share one test set.
    """
    if n_train < 1 or n_test < 1:
        raise DataError(f"demo needs n_train and n_test >= 1, got {n_train} and {n_test}")
    if imbalance is not None and not 0.0 < imbalance <= 1.0:
        raise DataError(f"demo imbalance must be in (0, 1], got {imbalance}")
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    y_train = _labels(_class_sizes(n_train, imbalance), train_rng)
    y_test = _labels(_class_sizes(n_test, None), test_rng)
    return Dataset(
        name="demo" if imbalance is None else "demo-imbalanced",
        x_train=_render(y_train, train_rng),
        y_train=y_train,
        x_test=_render(y_test, test_rng),
        y_test=y_test,
        class_names=CLASS_NAMES,
        source="demo",
    )


def _class_sizes(n: int, imbalance: float | None) -> np.ndarray:
    """Images per class summing to n: equal, or decaying geometrically to imbalance."""
    k = len(CLASS_NAMES)
    ratio = 1.0 if imbalance is None else imbalance
    weights = ratio ** (np.arange(k) / (k - 1))
    quotas = n * weights / weights.sum()
    sizes = np.floor(quotas).astype(np.int64)
    # Largest remainders get the leftover images, so the sizes sum to exactly n.
    sizes[np.argsort(-(quotas - sizes), kind="stable")[: n - sizes.sum()]] += 1
    return sizes


def _labels(sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shuffled labels with the given count per class."""
    return rng.permutation(np.repeat(np.arange(len(sizes)), sizes))


def _masks(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Foreground masks (n, 32, 32): each class's pattern at a random place, size and tilt."""
    n = len(labels)
    cx, cy = rng.uniform(*CENTRE, (2, n, 1, 1)).astype(np.float32)
    s = rng.uniform(*RADIUS, (n, 1, 1)).astype(np.float32)
    p = rng.uniform(*PERIOD, (n, 1, 1)).astype(np.float32)
    angle = rng.uniform(-TILT, TILT, (n, 1, 1)).astype(np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = np.cos(angle) * dy - np.sin(angle) * dx
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    for cls, pattern in enumerate(PATTERNS):
        sel = labels == cls
        masks[sel] = pattern(u[sel], v[sel], s[sel], p[sel])
    return masks


def _colours(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random background colours and foreground colours clearly apart from them."""
    bg = rng.uniform(0.0, 255.0, (n, 3)).astype(np.float32)
    # Each channel moves toward whichever end has more room, so contrast is always >= ~50.
    room_up = 255.0 - bg
    direction = np.where(room_up >= bg, np.float32(1.0), np.float32(-1.0))
    room = np.maximum(room_up, bg)
    fg = bg + direction * room * rng.uniform(0.4, 1.0, (n, 3)).astype(np.float32)
    return bg, fg


def _render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 images (n, 32, 32, 3) for the given labels."""
    n = len(labels)
    masks = _masks(labels, rng)[..., None]
    bg, fg = _colours(n, rng)
    sigma = rng.uniform(*NOISE, (n, 1, 1, 1)).astype(np.float32)
    # Uniform noise with standard deviation sigma: three times faster to draw than Gaussian.
    images = rng.random((n, SIZE, SIZE, 3), dtype=np.float32)
    images -= 0.5
    images *= sigma * np.float32(np.sqrt(12.0))
    images += np.where(masks, fg[:, None, None, :], bg[:, None, None, :])
    # Adding 0.5 before the truncating cast rounds; much faster than ndarray.round().
    np.clip(images, 0.0, 255.0, out=images)
    images += 0.5
    return images.astype(np.uint8)
