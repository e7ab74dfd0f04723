"""Training images/s per model and precision, and the input pipeline's images/s alone.

Shows in one short command whether the model or the pipeline limits training on a box:
each model (AE01-03, stacked and single classifiers) trains `--steps` steps on device-
resident random batches in fp32, mixed precision (mixed_float16) and XLA (jit_compile);
the pipeline (`worker.ml.pipeline.make_input`) is timed alone, with and without
augmentation. Mixed precision is skipped on a CPU-only machine (no float16 speed-up there,
and it says so); XLA is kept where TensorFlow can compile.

    python bench/gpu_throughput.py [--batch 256] [--steps 20] [--models all]

Last line of stdout: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from jobspec.params import AugmentSettings  # noqa: E402
from worker.ml import models  # noqa: E402
from worker.ml.pipeline import can_augment, make_input  # noqa: E402

BUILDERS = {
    "ae01": models.build_ae01,
    "ae02": models.build_ae02,
    "ae03": models.build_ae03,
    "stacked_classifier": models.build_stacked_classifier,
    "single_classifier": models.build_single_classifier,
}
MODES = ("fp32", "mixed", "xla")


def gpus() -> list[str]:
    """Names of the GPUs TensorFlow sees (none on other backends)."""
    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def model_rate(name: str, mode: str, batch: int, steps: int) -> float:
    """Images/s of `steps` train steps after two warm-up steps."""
    keras.backend.clear_session()
    previous = keras.mixed_precision.dtype_policy().name
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mode == "mixed" else "float32")
    try:
        model = BUILDERS[name]()
        classifier = name.endswith("classifier")
        loss = "sparse_categorical_crossentropy" if classifier else "mse"
        model.compile(optimizer="adam", loss=loss, jit_compile=mode == "xla")
        rng = np.random.default_rng(0)
        x = rng.random((batch, *model.input_shape[1:]), dtype=np.float32)
        y = rng.integers(0, 10, batch) if classifier else x
        x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
        for _ in range(2):
            model.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(steps):
            loss_value = model.train_on_batch(x, y)
        float(np.asarray(loss_value).ravel()[0])  # waits for the device
        return steps * batch / (time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def pipeline_rate(batch: int, steps: int, augment: bool) -> float:
    """Images/s of training batches from the pipeline alone (uint8 CIFAR-sized in)."""
    x = np.random.default_rng(0).integers(0, 256, (batch * steps, 32, 32, 3), dtype=np.uint8)
    y = np.zeros(len(x), dtype="int32")
    settings = AugmentSettings() if augment else None
    data = make_input(x, y, batch_size=batch, shuffle=True, augment=settings)
    it = iter(data.data)
    next(it)  # warm-up: the first batch pays for starting the pipeline
    start = time.perf_counter()
    images = sum(int(next(it)[0].shape[0]) for _ in range(steps))
    return images / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    """Measure, print the table and, last, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    on_gpu = bool(gpus())
    parser.add_argument("--batch", type=int, default=256 if on_gpu else 32)
    parser.add_argument("--steps", type=int, default=50 if on_gpu else 5)
    parser.add_argument("--models", default="all", help="comma-separated, or all")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    names = list(BUILDERS) if args.models == "all" else args.models.split(",")
    modes = args.modes.split(",")
    skipped = {}
    if "mixed" in modes and not on_gpu:
        skipped["mixed"] = "no GPU: float16 does not speed up training on this CPU"
    if "xla" in modes and keras.backend.backend() != "tensorflow":
        skipped["xla"] = "jit_compile measured on the TensorFlow backend only"
    modes = [m for m in modes if m not in skipped]
    rates = {
        n: {m: round(model_rate(n, m, args.batch, args.steps), 1) for m in modes} for n in names
    }
    pipeline = {}
    if can_augment():
        for key, augment in (("plain", False), ("augmented", True)):
            pipeline[key] = round(pipeline_rate(args.batch, max(args.steps, 10), augment), 1)
    device = ", ".join(gpus()) or f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device}  backend={keras.backend.backend()}  batch={args.batch}")
    print(f"{'model':<20}" + "".join(f" {m:>10}" for m in modes) + "   (train img/s)")
    for name, row in rates.items():
        print(f"{name:<20}" + "".join(f" {row[m]:>10,.0f}" for m in modes))
    for key, rate in pipeline.items():
        print(f"pipeline {key:<11} {rate:>10,.0f} img/s")
    for mode, why in skipped.items():
        print(f"skipped {mode}: {why}")
    slowest = min((r for row in rates.values() for r in row.values()), default=0.0)
    figures = {
        "bench": "gpu_throughput",
        "device": device,
        "backend": keras.backend.backend(),
        "batch": args.batch,
        "steps": args.steps,
        "models": rates,
        "pipeline": pipeline,
        "skipped": skipped,
        # The pipeline limits training when it is slower than the model it feeds.
        "pipeline_limits": bool(pipeline) and pipeline["augmented"] < slowest,
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
