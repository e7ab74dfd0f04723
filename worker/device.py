"""What this worker computes on, and the one-time framework import."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from functools import lru_cache


def prepare() -> None:
    """Import Keras (and its backend) once; let TensorFlow grow GPU memory as needed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            # RuntimeError: already initialised, too late and harmless.
            with contextlib.suppress(RuntimeError):
                tf.config.experimental.set_memory_growth(gpu, True)


@lru_cache
def describe() -> str:
    """e.g. "GPU:0 NVIDIA H200" or "CPU (16 cores)"."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU:0 {details.get('device_name', 'GPU')}" + (
                f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
            )
    return f"CPU ({os.cpu_count()} cores)"


@lru_cache
def versions() -> dict:
    """Versions that decide what a run computed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in (
        "stacklab",
        "keras",
        "tensorflow",
        "tensorflow-cpu",
        "numpy",
        "optuna",
        "jax",
        "torch",
    ):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    import keras

    out["keras_backend"] = keras.backend.backend()
    return out


def worker_name() -> str:
    """host:pid, unique per worker process."""
    return f"{platform.node()}:{os.getpid()}"
