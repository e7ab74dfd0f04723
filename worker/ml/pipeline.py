"""Input pipelines: uint8 arrays in, float32 [0, 1] batches out, with no stall per epoch.

A bare `model.fit(x, y)` builds a fresh tf.data iterator every epoch and can stall for
seconds at epoch boundaries while the old one is torn down (tf.data's autotuning thread:
see `_fixed_options`). Here, on the TensorFlow backend, one repeating tf.data pipeline
is built per run, Keras keeps its training iterator across epochs (`steps_per_epoch`
given), and autotuning is off, so the iterators Keras still tears down (validation's,
every epoch) go at once. Other backends get a plain NumPy batch stream.

The order of epoch e depends only on (seed, e), never on how many epochs this process has
already run: a run resumed at epoch k (`start_epoch=k`) sees exactly the batches the
uninterrupted run saw from epoch k on. Every epoch ends with its own, possibly partial,
batch. With `max_steps` (a quick run) an epoch is the first max_steps batches of its own
order, so the rule holds for limited epochs too.

With `augment`, on TensorFlow, augmentation is a parallel stage of the same pipeline, so it
overlaps with the train step instead of running inside it. Its random draws are stateless,
keyed by (seed, epoch, batch index): a resumed run augments exactly as the uninterrupted
one did without any RNG state in the checkpoint.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from jobspec.params import AugmentSettings

# Batches made ahead of the train step (tf.data's autotuning is off: _fixed_options).
PREFETCH_BATCHES = 4

# Folded into the augmentation key so its draws never coincide with the shuffle's.
_AUGMENT_STREAM = 0x5EED_A06


@dataclass(frozen=True)
class InputData:
    """What `model.fit` takes for one split, and how many steps make one pass."""

    data: Any
    steps: int
    images: int
    batch_size: int


def can_augment() -> bool:
    """Whether make_input can augment (TensorFlow's tf.data); elsewhere the model does."""
    return keras.backend.backend() == "tensorflow"


def make_input(
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    start_epoch: int = 0,
    max_steps: int | None = None,
    augment: AugmentSettings | None = None,
) -> InputData:
    """A repeating stream of (x, y) batches, or x alone when y is None, from start_epoch on;
    `max_steps` caps the batches of each epoch; `augment` (only where can_augment())
    augments every batch."""
    if augment is not None and not can_augment():
        raise ValueError("this backend augments inside the model, not in the pipeline")
    if len(x) == 0:
        raise ValueError("cannot train or validate on zero images")
    if start_epoch < 0:
        raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    steps = math.ceil(len(x) / batch_size)
    steps = steps if max_steps is None else min(steps, max_steps)
    make = _tf_dataset if keras.backend.backend() == "tensorflow" else _numpy_batches
    data = make(
        x,
        y,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        start_epoch=start_epoch,
        steps=steps,
        **({} if augment is None else {"augment": augment}),
    )
    images = min(len(x), steps * batch_size)
    return InputData(data, steps, images, batch_size)


def _tf_dataset(
    x,
    y,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    start_epoch: int,
    steps: int | None = None,
    augment: AugmentSettings | None = None,
):
    import tensorflow as tf  # the input pipeline only; models stay backend-agnostic

    n = len(x)
    images = tf.convert_to_tensor(x)
    labels = None if y is None else tf.convert_to_tensor(y.astype("int32"))
    # Index batches, not images, go through tf.data: an epoch's order is one stateless
    # draw keyed by (seed, epoch), and no shuffle buffer is refilled at epoch boundaries.
    end = n if steps is None else min(n, steps * batch_size)  # an epoch's first `steps` batches
    starts = tf.range(0, end, batch_size, dtype=tf.int64)

    def epoch_batches(epoch):
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            key = tf.stack([tf.constant(seed, tf.int64), epoch])
            order = tf.random.experimental.stateless_shuffle(order, seed=key)
        return (
            tf.data.Dataset.from_tensor_slices(starts)
            .enumerate()
            .map(lambda batch, start: (epoch, batch, order[start : start + batch_size]))
        )

    augment_fn = None if augment is None else _tf_augmenter(augment, seed)

    def load(epoch, batch, idx):
        xb = tf.cast(tf.gather(images, idx), tf.float32) / 255.0
        if augment_fn is not None:
            xb = augment_fn(xb, epoch, batch)
        return xb if labels is None else (xb, tf.gather(labels, idx))

    ds = tf.data.Dataset.counter(start_epoch).flat_map(epoch_batches)
    ds = ds.map(load, num_parallel_calls=_parallel_calls(), deterministic=True)
    return ds.prefetch(PREFETCH_BATCHES).with_options(_fixed_options(tf))


def _parallel_calls() -> int:
    """One batch in flight per core this process may run on."""
    try:
        return max(2, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(2, os.cpu_count() or 2)


def _fixed_options(tf):
    """tf.data's autotuning off: fixed parallelism and buffer sizes instead.

    With autotuning on, every iterator runs a model thread that re-optimises the pipeline
    at a period that doubles (10 ms, 20 ms, ... up to a minute), and the iterator's
    destructor waits for that thread's current sleep to end. Keras destroys the
    validation iterator at every epoch's validation and the training iterator when fit
    returns, so each could stall training for seconds (seen: 2.4-28 s on 2 cores,
    bench/train_overhead.py). Fixed settings cost nothing here: one map stage, a few
    batches ahead.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def _tf_augmenter(settings: AugmentSettings, seed: int):
    """(batch, epoch, batch index) -> the batch augmented with draws keyed by all three."""
    import tensorflow as tf

    from worker.ml.augment import N_DRAWS, augment_batch

    def run(xb, epoch, batch):
        key = tf.stack([tf.constant(seed, tf.int64), tf.constant(_AUGMENT_STREAM, tf.int64)])
        key = tf.random.experimental.stateless_fold_in(key, epoch)
        key = tf.random.experimental.stateless_fold_in(key, batch)
        draws = tf.random.stateless_uniform((tf.shape(xb)[0], N_DRAWS), seed=key)
        return augment_batch(xb, draws, settings)

    return run


def _numpy_batches(
    x, y, *, batch_size: int, shuffle: bool, seed: int, start_epoch: int, steps: int | None = None
) -> Iterator:
    for epoch in itertools.count(start_epoch):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
        end = len(x) if steps is None else min(len(x), steps * batch_size)
        for start in range(0, end, batch_size):
            idx = order[start : start + batch_size]
            xb = x[idx].astype("float32") / 255.0
            yield xb if y is None else (xb, y[idx].astype("int32"))


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in [0, 1], as the models expect them."""
    return x.astype("float32") / 255.0
