"""Images/s of legacy ImageDataGenerator vs Keras 3 random layers vs our fused RandomAugment."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

# Quiet TensorFlow's start-up chatter so the table is readable; set before keras loads it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a plain script from anywhere: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from worker.ml.augment import (  # noqa: E402
    AugmentSettings,
    build_augmenter,
    legacy_generator,
)

Batchwise = Callable[[np.ndarray], object]


def make_images(n: int, seed: int = 0) -> np.ndarray:
    """Random uint8 images converted to float32 in [0, 1], CIFAR-10 shaped."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8).astype("float32") / 255.0


def batches(x: np.ndarray, batch: int) -> list[np.ndarray]:
    """Consecutive slices of x, the last one possibly short."""
    return [x[i : i + batch] for i in range(0, len(x), batch)]


def timed(outputs: Iterable[object]) -> float:
    """Seconds to exhaust an iterable of batches, materialising each as numpy."""
    start = time.perf_counter()
    for out in outputs:
        # Also forces async backends (JAX) to finish the work being timed.
        ops.convert_to_numpy(out)
    return time.perf_counter() - start


def time_legacy(x: np.ndarray, batch: int, settings: AugmentSettings) -> float:
    """One full pass of ImageDataGenerator.flow over x."""
    flow = legacy_generator(settings).flow(x, batch_size=batch, shuffle=False, seed=0)
    return timed(flow[i] for i in range(len(flow)))


def time_batchwise(fn: Batchwise, chunks: list[np.ndarray]) -> float:
    """One pass of fn over the chunks after warming it up on both batch shapes."""
    fn(ops.convert_to_tensor(chunks[0]))
    fn(ops.convert_to_tensor(chunks[-1]))
    return timed(fn(ops.convert_to_tensor(c)) for c in chunks)


def keras_chain(settings: AugmentSettings, seed: int) -> Batchwise:
    """Stock Keras 3 random layers plus a simple channel shift (no shear layer)."""
    fill = settings.fill_mode
    layers = [
        keras.layers.RandomRotation(settings.rotation_range / 360.0, fill_mode=fill, seed=seed),
        keras.layers.RandomTranslation(
            settings.height_shift_range, settings.width_shift_range, fill_mode=fill, seed=seed
        ),
        keras.layers.RandomZoom(
            settings.zoom_range, settings.zoom_range, fill_mode=fill, seed=seed
        ),
        keras.layers.RandomFlip("horizontal", seed=seed),
    ]
    generator = keras.random.SeedGenerator(seed)
    limit = settings.channel_shift_range / 255.0

    def run(images):
        for layer in layers:
            images = layer(images, training=True)
        shape = (ops.shape(images)[0], 1, 1, 1)
        shift = keras.random.uniform(shape, -limit, limit, seed=generator)
        return ops.clip(images + shift, 0.0, 1.0)

    return run


def ours(settings: AugmentSettings, seed: int) -> Batchwise:
    """Our fused layer called eagerly with training=True."""
    layer = build_augmenter(settings, seed=seed)
    return lambda images: layer(images, training=True)


def compiled(fn: Batchwise) -> Batchwise | None:
    """fn inside tf.function on the TensorFlow backend (None elsewhere)."""
    # Harness only: in real training the layer already runs inside the compiled train step.
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf.function(fn, reduce_retracing=True)


def measure(n: int, batch: int, seed: int) -> dict[str, float]:
    """Seconds per method on the same images."""
    settings = AugmentSettings()
    x = make_images(n, seed)
    chunks = batches(x, batch)
    seconds = {"legacy ImageDataGenerator.flow": time_legacy(x, batch, settings)}
    candidates = {
        "keras 3 layer chain": keras_chain(settings, seed),
        "RandomAugment": ours(settings, seed),
    }
    for name, fn in candidates.items():
        seconds[f"{name} (eager)"] = time_batchwise(fn, chunks)
        graph_fn = compiled(fn)
        if graph_fn is not None:
            seconds[f"{name} (tf.function)"] = time_batchwise(graph_fn, chunks)
    return seconds


def print_table(n: int, seconds: dict[str, float]) -> None:
    """Method, img/s, seconds and ratio against legacy."""
    legacy = n / seconds["legacy ImageDataGenerator.flow"]
    print(f"{'method':<36} {'img/s':>10} {'seconds':>9} {'vs legacy':>10}")
    for name, secs in seconds.items():
        rate = n / secs
        print(f"{name:<36} {rate:>10,.0f} {secs:>9.2f} {rate / legacy:>9.2f}x")


def summary(n: int, batch: int, seconds: dict[str, float]) -> dict[str, object]:
    """Figures for the JSON line; "ratio" is our best img/s over legacy img/s."""
    rate = {name: n / secs for name, secs in seconds.items()}
    legacy = rate["legacy ImageDataGenerator.flow"]
    ours_eager = rate["RandomAugment (eager)"]
    ours_best = rate.get("RandomAugment (tf.function)", ours_eager)
    return {
        "backend": keras.backend.backend(),
        "images": n,
        "batch": batch,
        "legacy_img_s": round(legacy, 1),
        "keras_chain_eager_img_s": round(rate["keras 3 layer chain (eager)"], 1),
        "keras_chain_compiled_img_s": _rounded(rate.get("keras 3 layer chain (tf.function)")),
        "ours_eager_img_s": round(ours_eager, 1),
        "ours_compiled_img_s": _rounded(rate.get("RandomAugment (tf.function)")),
        "ours_img_s": round(ours_best, 1),
        "ours_compiled": "RandomAugment (tf.function)" in rate,
        "ratio": round(ours_best / legacy, 2),
        "ratio_eager": round(ours_eager / legacy, 2),
    }


def _rounded(value: float | None) -> float | None:
    """value to one decimal, keeping None."""
    return None if value is None else round(value, 1)


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark, print the table and, last, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seconds = measure(args.images, args.batch, args.seed)
    print(f"backend={keras.backend.backend()} images={args.images} batch={args.batch}")
    print_table(args.images, seconds)
    figures = summary(args.images, args.batch, seconds)
    if figures["ours_compiled"]:
        print("note: 'ratio' uses RandomAugment wrapped in tf.function by this harness only;")
        print("      in training the layer runs inside the compiled train step anyway.")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
