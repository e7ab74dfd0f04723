"""Input pipelines: uint8 arrays in, float32 [0, 1] batches out, with no stall per epoch.

A bare `model.fit(x, y)` builds a fresh tf.data iterator every epoch and can stall for
seconds at epoch boundaries while the old one is torn down. Here, on the TensorFlow
backend, one repeating tf.data pipeline is built per run and Keras keeps its iterator
across epochs (`steps_per_epoch` given). Other backends get a plain NumPy batch stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np


@dataclass(frozen=True)
class InputData:
    """What `model.fit` takes for one split, and how many steps make one pass."""

    data: Any
    steps: int
    images: int
    batch_size: int


def make_input(
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
) -> InputData:
    """A repeating stream of (x, y) batches, or x alone when y is None."""
    if len(x) == 0:
        raise ValueError("cannot train or validate on zero images")
    steps = math.ceil(len(x) / batch_size)
    if keras.backend.backend() == "tensorflow":
        data = _tf_dataset(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed)
    else:
        data = _numpy_batches(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed)
    return InputData(data=data, steps=steps, images=len(x), batch_size=batch_size)


def _tf_dataset(x, y, *, batch_size: int, shuffle: bool, seed: int):
    import tensorflow as tf  # the input pipeline only; models stay backend-agnostic

    tensors = x if y is None else (x, y.astype("int32"))
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(_scale_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.repeat().prefetch(tf.data.AUTOTUNE)


def _scale_tf(x, y=None):
    import tensorflow as tf

    x = tf.cast(x, tf.float32) / 255.0
    return x if y is None else (x, y)


def _numpy_batches(x, y, *, batch_size: int, shuffle: bool, seed: int) -> Iterator:
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            xb = x[idx].astype("float32") / 255.0
            yield xb if y is None else (xb, y[idx].astype("int32"))


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in [0, 1], as the models expect them."""
    return x.astype("float32") / 255.0
