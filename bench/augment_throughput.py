"""Augmented images/s: the legacy ImageDataGenerator vs ours, each run the way training runs it.

- legacy: `ImageDataGenerator.flow` over float32 arrays, shuffled, the batches the seed fed to
  `model.fit` (a Sequence consumed one batch at a time on one thread).
- ours (tf.data): the finetune's own training pipeline (`worker.ml.pipeline.make_input` with
  `augment=`), uint8 in, augmented float32 batches out, consumed as tensors the way `fit`
  takes them (no numpy round trip); a fresh iterator per repeat, so its start-up counts.
- ours (in the step): RandomAugment inside a compiled function fed by the un-augmented
  pipeline: the path for backends other than TensorFlow.

Each method runs `--repeats` times, interleaved in one process; the table shows the best and
the spread ((best - worst) / best). "ratio" is the best of ours (tf.data) over the best legacy.

    python bench/augment_throughput.py [--images 10000] [--batch 128] [--repeats 3]

Last line of stdout: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Quiet TensorFlow's start-up chatter so the table is readable; set before keras loads it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a plain script from anywhere: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from worker.ml.augment import AugmentSettings, build_augmenter, legacy_generator  # noqa: E402
from worker.ml.pipeline import can_augment, make_input  # noqa: E402

LEGACY = "legacy ImageDataGenerator.flow"
PIPELINE = "ours: tf.data pipeline stage"
IN_STEP = "ours: RandomAugment in compiled step"
HOW = {
    LEGACY: "flow(float32 x, y, shuffle) batches, one thread, as the seed fed fit",
    PIPELINE: "make_input(uint8, augment=...) batches as tensors, parallel map + prefetch",
    IN_STEP: "layer(training=True) in tf.function over make_input batches",
}


def make_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 CIFAR-10 shaped images and labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return x, rng.integers(0, 10, size=n).astype("int32")


def legacy_run(x: np.ndarray, y: np.ndarray, batch: int, seed: int) -> Callable[[], int]:
    """One epoch of ImageDataGenerator.flow batches over float images."""
    xf = x.astype("float32") / 255.0
    flow = legacy_generator(AugmentSettings()).flow(
        xf, y, batch_size=batch, shuffle=True, seed=seed
    )

    def run() -> int:
        flow.on_epoch_end()
        return sum(len(flow[i][0]) for i in range(len(flow)))

    return run


def pipeline_run(x: np.ndarray, y: np.ndarray, batch: int, seed: int) -> Callable[[], int]:
    """One epoch of the training pipeline with augmentation, from a fresh iterator."""
    data = make_input(x, y, batch_size=batch, shuffle=True, seed=seed, augment=AugmentSettings())

    def run() -> int:
        it = iter(data.data)
        return sum(int(next(it)[0].shape[0]) for _ in range(data.steps))

    return run


def in_step_run(x: np.ndarray, y: np.ndarray, batch: int, seed: int) -> Callable[[], int]:
    """One epoch of plain pipeline batches augmented by the layer inside a tf.function."""
    import tensorflow as tf

    data = make_input(x, y, batch_size=batch, shuffle=True, seed=seed)
    layer = build_augmenter(AugmentSettings(), seed=seed)

    @tf.function(reduce_retracing=True)
    def step(images):
        # Return the images themselves: a value derived from the shape alone would let
        # grappler prune the augmentation away.
        return layer(images, training=True)

    def run() -> int:
        it = iter(data.data)
        return sum(int(step(next(it)[0]).shape[0]) for _ in range(data.steps))

    return run


def measure(n: int, batch: int, seed: int, repeats: int) -> dict[str, list[float]]:
    """img/s per method and repeat, methods interleaved within each repeat."""
    x, y = make_images(n, seed)
    methods = {LEGACY: legacy_run(x, y, batch, seed)}
    if can_augment():
        methods[PIPELINE] = pipeline_run(x, y, batch, seed)
        methods[IN_STEP] = in_step_run(x, y, batch, seed)
    for run in methods.values():  # warm-up: graph builds and first allocations
        run()
    rates: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            start = time.perf_counter()
            images = run()
            rates[name].append(images / (time.perf_counter() - start))
    return rates


def spread(values: list[float]) -> float:
    """(best - worst) / best."""
    return (max(values) - min(values)) / max(values)


def print_table(rates: dict[str, list[float]]) -> None:
    """Method, best img/s, spread, ratio to legacy, and how it was run."""
    legacy = max(rates[LEGACY])
    print(f"{'method':<38} {'best img/s':>10} {'spread':>7} {'vs legacy':>9}  how it ran")
    for name, values in rates.items():
        best = max(values)
        print(
            f"{name:<38} {best:>10,.0f} {spread(values):>6.1%} {best / legacy:>8.2f}x  {HOW[name]}"
        )


def summary(n: int, batch: int, repeats: int, rates: dict[str, list[float]]) -> dict:
    """Figures for the JSON line."""
    legacy = max(rates[LEGACY])
    figures: dict[str, object] = {
        "bench": "augment_throughput",
        "backend": keras.backend.backend(),
        "images": n,
        "batch": batch,
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "legacy_img_s": round(legacy, 1),
        "legacy_spread": round(spread(rates[LEGACY]), 3),
    }
    for key, name in (("pipeline", PIPELINE), ("in_step", IN_STEP)):
        if name in rates:
            figures[f"{key}_img_s"] = round(max(rates[name]), 1)
            figures[f"{key}_spread"] = round(spread(rates[name]), 3)
            figures[f"{key}_ratio"] = round(max(rates[name]) / legacy, 2)
    figures["ratio"] = figures.get("pipeline_ratio")
    return figures


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table and, last, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rates = measure(args.images, args.batch, args.seed, args.repeats)
    print(f"backend={keras.backend.backend()} images={args.images} batch={args.batch}")
    print_table(rates)
    if not can_augment():
        print("note: this backend augments inside the compiled step only; no pipeline row.")
    figures = summary(args.images, args.batch, args.repeats, rates)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
