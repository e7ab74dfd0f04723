"""Shared training machinery: optimizers, runtime options, one fit with our callbacks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import keras

from jobspec.params import RuntimeOptions
from worker.ml.callbacks import FitState, ReporterCallback
from worker.ml.checkpoint import Checkpoint
from worker.ml.pipeline import InputData
from worker.ml.reporting import Reporter


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """sgd (with the usual 0.9 momentum), adam or rmsprop."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    raise ValueError(f"optimizer must be sgd, adam or rmsprop, got {name!r}")


@contextlib.contextmanager
def runtime(options: RuntimeOptions, seed: int) -> Iterator[None]:
    """Seed everything and apply the dtype policy for the models built inside."""
    keras.utils.set_random_seed(seed)
    previous = keras.mixed_precision.dtype_policy().name
    if options.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def release_memory() -> None:
    """Drop Keras' global graph state between jobs, and what TensorFlow keeps beyond it."""
    _forget_custom_gradients()
    keras.backend.clear_session(free_memory=True)


def _forget_custom_gradients() -> None:
    """Forget the gradient functions TensorFlow registered while tracing the last job.

    Keras' TF optimizer sums gradients with `replica_context.all_reduce`, a
    `tf.custom_gradient` that, in graph mode, registers a new "CustomGradient-<uid>"
    function in TensorFlow's global gradient registry every time a train step is traced.
    Its closure holds the whole traced step, so each job leaked its graph (~25 MB for the
    single classifier, ~60 MB a job in a worker: bench/worker_memory.py). Between jobs no
    graph is being built, so none of them can be needed again.
    """
    if keras.backend.backend() != "tensorflow":
        return
    try:
        from tensorflow.python.framework import ops as tf_ops

        registry = tf_ops._gradient_registry._registry  # private: guarded below
    except (ImportError, AttributeError):
        return
    for name in [name for name in registry if name.startswith("CustomGradient-")]:
        registry.pop(name, None)


@dataclass
class FitResult:
    """What one call to fit produced."""

    history: dict[str, list[float]]
    epochs_run: int
    cancelled: bool
    seconds: float
    best_epoch: int | None = None  # 1-based, for early stopping
    best_value: float | None = None
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able account of the fit."""
        final = {key: values[-1] for key, values in self.history.items() if values}
        return {
            "epochs_run": self.epochs_run,
            "cancelled": self.cancelled,
            "seconds": round(self.seconds, 3),
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "final": final,
            **self.extra,
        }


def fit(
    model: keras.Model,
    *,
    stage: str,
    train: InputData,
    val: InputData | None,
    epochs: int,
    reporter: Reporter,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    class_weight: dict[int, float] | None = None,
    start: FitState | None = None,
    snapshot: Callable[[FitState], Checkpoint] | None = None,
) -> FitResult:
    """Train a compiled model with progress, metrics and cancellation wired to reporter.

    `start` resumes a stage at its epoch (the model, optimizer and callbacks already
    restored; `train` built with the same start_epoch). When the reporter wants
    checkpoints, `snapshot` turns the state at each epoch's end into one.
    """
    start = start or FitState()
    if start.finished(epochs):
        # Training ended before the restart: only what ends training (best weights) is left.
        for callback in callbacks:
            callback.set_model(model)
            callback.on_train_begin()
            callback.on_train_end()
        return FitResult(start.history or {}, start.epoch, False, start.seconds)
    reporter.stage_started(stage, epochs=epochs, steps=train.steps, images=train.images)
    bridge = ReporterCallback(
        reporter,
        stage=stage,
        epochs=epochs,
        steps=train.steps,
        batch_size=train.batch_size,
        start=start,
        snapshot=snapshot,
    )
    model.fit(
        train.data,
        epochs=epochs,
        initial_epoch=start.epoch,
        steps_per_epoch=train.steps,
        validation_data=None if val is None else val.data,
        validation_steps=None if val is None else val.steps,
        class_weight=class_weight,
        shuffle=False,  # the pipeline shuffles; Keras would only warn
        # The bridge last: its epoch report and checkpoint see early stopping's decision.
        callbacks=[*callbacks, bridge],
        verbose=0,
    )
    values = bridge.history
    epochs_run = len(next(iter(values.values()), []))
    return FitResult(values, epochs_run, bridge.cancelled, bridge.seconds())
