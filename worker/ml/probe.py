"""What the autoencoders learned: the pretrain's last stage. Frozen features of each
depth of the stack, read by a linear probe and by k-NN (worker/ml/probe_scores.py), beside
a randomly initialised encoder of the same shape; AE01's filters as an image grid.

Each depth's feature maps (ae01: 32x32x64, ae01-02: 16x16x128, stacked: 8x8x256) are
averaged over a POOL_GRID x POOL_GRID grid of image regions and flattened (256, 512 and
1024 numbers), inside the model, so no full map is kept. Encoders run with training=False
(BatchNorm's moving statistics), a batch at a time. At most `ProbeBudget.max_images` images
of each part (the split's training and validation parts, the test set) are read, a fixed
random sample, and the 2-D PCA of test features draws at most `max_pca_points` of them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from PIL import Image

from jobspec.learned import (
    LEARNED_FILE,
    LEARNED_FILTERS_FILE,
    LEARNED_VERSION,
    PROBE_STAGE,
    RANDOM_ENCODER,
)
from jobspec.params import PretrainConfig
from jobspec.stages import AE01, STAGES
from worker.ml.atomic import atomic_write
from worker.ml.datasets.dataset import Dataset, Split
from worker.ml.models import IMAGE_SHAPE, build_stacked_encoder, encoder_of
from worker.ml.pipeline import to_float
from worker.ml.probe_scores import (
    KNN_K,
    PROBE_C,
    PROBE_MAX_ITER,
    TEST,
    TRAIN,
    VALIDATION,
    Parts,
    capped_parts,
    project,
    score,
)
from worker.ml.reporting import Progress, Reporter
from worker.ml.training import runtime

POOL_GRID = 2
BATCH_SIZE = 256


@dataclass(frozen=True)
class ProbeBudget:
    """How much the probe stage may read: images per part, PCA points per encoder."""

    max_images: int = 5000
    max_pca_points: int = 1000


@dataclass
class Learned:
    """The probe stage's summary (None when it was stopped or could not run), its files."""

    summary: dict | None
    cancelled: bool = False
    files: list[Path] = field(default_factory=list)


def feature_model(encoders: Sequence[keras.Model], grid: int = POOL_GRID) -> keras.Model:
    """One model: the encoders chained, each depth's output mean-pooled to grid x grid
    regions and flattened (so no full feature map is ever kept)."""
    inputs = keras.Input(IMAGE_SHAPE, name="probe_input")
    x, outputs = inputs, []
    for depth, encoder in enumerate(encoders, start=1):
        x = encoder(x, training=False)
        size = (int(x.shape[1]) // grid, int(x.shape[2]) // grid)
        # float32 whatever the policy: a float16 mean over a region loses digits
        pooled = keras.layers.AveragePooling2D(size, name=f"probe_pool_{depth}", dtype="float32")(x)
        outputs.append(keras.layers.Flatten(name=f"probe_flat_{depth}", dtype="float32")(pooled))
    return keras.Model(inputs, outputs, name="probe_features")


def extract(
    model: keras.Model, x: np.ndarray, on_batch: Callable[[int], bool] | None = None
) -> list[np.ndarray] | None:
    """Each depth's pooled features of x, a batch at a time; None when on_batch (called
    with each batch's size) says stop. The last batch is padded to the full size, so the
    model is traced for one shape only."""
    found: list[list[np.ndarray]] = []
    for start in range(0, len(x), BATCH_SIZE):
        batch = to_float(x[start : start + BATCH_SIZE])
        size = len(batch)
        if 0 < size < BATCH_SIZE and len(x) > size:  # a lone small batch keeps its size
            batch = np.concatenate(
                [batch, np.zeros((BATCH_SIZE - size, *batch.shape[1:]), batch.dtype)]
            )
        out = model.predict_on_batch(batch)
        out = out if isinstance(out, list | tuple) else [out]
        found.append([np.asarray(o[:size], dtype=np.float32) for o in out])
        if on_batch is not None and on_batch(size):
            return None
    if not found:  # an empty part (no validation images)
        return [np.zeros((0, int(o.shape[-1])), np.float32) for o in model.outputs]
    return [np.concatenate([b[d] for b in found]) for d in range(len(model.outputs))]


def filter_grid(kernel: np.ndarray, path: Path, *, columns: int = 8, cell: int = 24) -> Path:
    """The first conv layer's filters (k x k x 3 x n) as RGB tiles, each stretched to its
    own min..max, `columns` to a row, 4 white pixels between tiles."""
    k, _, _, n = kernel.shape
    scale = max(1, cell // k)
    rows = math.ceil(n / columns)
    gap = 4
    side = k * scale
    # White gaps: mid-grey is what a flat filter looks like
    canvas = np.full((rows * (side + gap) + gap, columns * (side + gap) + gap, 3), 255, np.uint8)
    for index in range(n):
        tile = kernel[..., index].astype(np.float64)
        low, high = tile.min(), tile.max()
        tile = (tile - low) / (high - low) if high > low else np.zeros_like(tile) + 0.5
        tile = np.kron((tile * 255 + 0.5).astype(np.uint8), np.ones((scale, scale, 1), np.uint8))
        top, left = gap + (index // columns) * (side + gap), gap + (index % columns) * (side + gap)
        canvas[top : top + side, left : left + side] = tile
    Image.fromarray(canvas).save(path)
    return path


def first_kernel(autoencoder: keras.Model) -> np.ndarray:
    """AE01's first convolution's kernel (k, k, 3, filters)."""
    encoder = encoder_of(autoencoder)
    conv = next(layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D))
    return np.asarray(conv.kernel)


class _Steps:
    """The stage's progress: one step per batch of features and one per encoder scored."""

    def __init__(self, reporter: Reporter, steps: int, images: int) -> None:
        self.reporter, self.steps, self.done, self.images = reporter, steps, 0, 0
        self.start = time.monotonic()
        reporter.stage_started(PROBE_STAGE, epochs=1, steps=steps, images=images)

    def step(self, images: int = 0) -> bool:
        """Count a step; True when the job is asked to stop."""
        self.done, self.images = self.done + 1, self.images + images
        elapsed = max(time.monotonic() - self.start, 1e-9)
        left = elapsed / self.done * (self.steps - self.done)
        rate = self.images / elapsed
        self.reporter.batch_ended(
            Progress(PROBE_STAGE, 1, 1, min(self.done, self.steps), self.steps, rate, left)
        )
        return self.reporter.should_stop()


def learned_stage(
    models: dict[str, keras.Model],
    parts: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    class_names: Sequence[str],
    kernel_sizes: Sequence[int],
    seed: int,
    out_dir: Path,
    budget: ProbeBudget | None = None,
    reporter: Reporter | None = None,
) -> Learned:
    """Probe every depth of the trained stack and a random encoder of the same shape;
    write LEARNED_FILE and the filter grid to out_dir. `parts`: the training part, the
    validation part and the test set as {TRAIN|VALIDATION|TEST: (images, labels)}."""
    budget, reporter = budget or ProbeBudget(), reporter or Reporter()
    started = time.monotonic()
    data = capped_parts(parts, budget.max_images, seed)
    keras.utils.set_random_seed(seed)  # the baseline's weights: the same for the same seed
    baseline = build_stacked_encoder(tuple(kernel_sizes))
    encoders = {
        "trained": feature_model([encoder_of(models[s]) for s in STAGES]),
        RANDOM_ENCODER: feature_model([x for x in baseline.layers if isinstance(x, keras.Model)]),
    }
    batches = math.ceil(sum(len(y) for y in data.y.values()) / BATCH_SIZE)
    steps = _Steps(reporter, len(encoders) * batches + len(STAGES) + 1, len(data.y[TRAIN]))
    features = _features(encoders, data, steps)
    if features is None:
        return Learned(None, cancelled=True)
    scored: dict[str, dict[str, Any]] = {}
    for name, found in features.items():
        pca = project(found[TRAIN], found[TEST], data.y[TEST], cap=budget.max_pca_points, seed=seed)
        scored[name] = {**score(found, data.y), "features": found[TRAIN].shape[1], "pca": pca}
        if steps.step():
            return Learned(None, cancelled=True)
    summary = _summary(scored, data, budget, class_names) | {"seconds": time.monotonic() - started}
    return Learned(summary, files=_write(summary, models, out_dir))


def _summary(scored: dict, data: Parts, budget: ProbeBudget, class_names: Sequence[str]) -> dict:
    """What LEARNED_FILE holds: how the probes were made, on how many images, the scores."""
    return {
        "version": LEARNED_VERSION,
        "k": KNN_K,
        "pool_grid": POOL_GRID,
        "c": PROBE_C,
        "max_iter": PROBE_MAX_ITER,
        "max_images": budget.max_images,
        "max_pca_points": budget.max_pca_points,
        "images": {part: len(y) for part, y in data.y.items()},
        "available": data.available,
        "classes": [str(c) for c in class_names],
        "encoders": scored,
    }


def _features(
    encoders: dict[str, keras.Model], data: Parts, steps: _Steps
) -> dict[str, dict[str, np.ndarray]] | None:
    """{encoder: {part: features}}: each depth of the trained stack by its stage's name,
    the baseline's last depth as RANDOM_ENCODER; None when stopped. The parts go through
    as one array (one traced shape, full batches)."""
    images = np.concatenate(list(data.x.values()))
    ends = np.cumsum([len(x) for x in data.x.values()])[:-1]
    found: dict[str, dict[str, np.ndarray]] = {}
    for name, model in encoders.items():
        depths = extract(model, images, on_batch=steps.step)
        if depths is None:
            return None
        named = [(name, depths[-1])] if name == RANDOM_ENCODER else zip(STAGES, depths, strict=True)
        for encoder, values in named:
            found[encoder] = dict(zip(data.x, np.split(values, ends), strict=True))
    return found


def _write(summary: dict, models: dict[str, keras.Model], out_dir: Path) -> list[Path]:
    path = Path(out_dir) / LEARNED_FILE
    with atomic_write(path) as fh:  # compact: the PCA points are most of it
        fh.write(json.dumps(summary, separators=(",", ":"), allow_nan=False).encode())
    grid = filter_grid(first_kernel(models[AE01]), Path(out_dir) / LEARNED_FILTERS_FILE)
    return [path, grid]


def after_pretrain(
    models: dict[str, keras.Model],
    split: Split,
    dataset: Dataset,
    config: PretrainConfig,
    *,
    out_dir: Path,
    budget: ProbeBudget | None = None,
    reporter: Reporter | None = None,
) -> Learned:
    """The probe stage of a pretrain whose three stages all trained: the split's training
    part fits the probes, its validation part and the test set score them."""
    parts = {
        TRAIN: (split.x_train, split.y_train),
        VALIDATION: (split.x_val, split.y_val),
        TEST: (dataset.x_test, dataset.y_test),
    }
    try:
        # The training's dtype policy: the random encoder is built as the trained ones were
        with runtime(config.runtime, config.seed):
            return learned_stage(
                {stage: models[stage] for stage in STAGES},
                parts,
                class_names=dataset.class_names,
                kernel_sizes=config.kernel_sizes,
                seed=config.seed,
                out_dir=out_dir,
                budget=budget,
                reporter=reporter,
            )
    except Exception as error:  # noqa: BLE001 - a failed probe must not fail the training
        # The autoencoders trained and are kept; the page says why there are no scores.
        summary = {"version": LEARNED_VERSION, "error": f"{type(error).__name__}: {error}"[:500]}
        path = Path(out_dir) / LEARNED_FILE
        with atomic_write(path) as fh:
            fh.write(json.dumps(summary).encode())
        return Learned(summary, files=[path])
