"""What a job will cost before it runs: epochs in total and memory of one training batch.

Pure arithmetic on the parameters, so the web can refuse a launch that would exhaust a
worker without importing Keras. The activation counts follow worker/ml/models.py (every
conv is followed by BatchNorm and ReLU, each keeping its output for the backward pass).
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from jobspec import kinds
from jobspec.stages import STAGES

BYTES_PER_FLOAT = 4
# Measured on TF-CPU 2.21 (peak RSS of two fit() steps at batch 32 and 256, per image):
# stacked classifier 5.3 MB, single 2.5 MB, AE02 4.6 MB: 1.0-1.5x the float32 activations.
TRAINING_FACTOR = 1.5

_ENCODER = {  # floats per image kept by each stage's encoder (conv, BN, ReLU, pool)
    "ae01": 3 * 32 * 32 * 64,
    "ae02": 3 * 32 * 32 * 128 + 16 * 16 * 128,
    "ae03": 3 * 16 * 16 * 256 + 8 * 8 * 256,
}
_DECODER = {  # (upsampling,) conv, BN, ReLU back to the stage's input
    "ae01": 3 * 32 * 32 * 3,
    "ae02": 32 * 32 * 128 + 3 * 32 * 32 * 64,
    "ae03": 16 * 16 * 256 + 3 * 16 * 16 * 128,
}
_HEAD = {
    "stacked": 2 * 8 * 8 * 512 + 512 + 3 * 1024,
    "single": 3 * 32 * 32 * 64 + 16 * 16 * 64 + 6 * 16 * 16 * 128 + 8 * 8 * 128 + 512 + 3 * 512,
}


def _stage_floats(stage: str) -> int:
    """A pretrain stage's step: the frozen encoders below it, then its own autoencoder."""
    below = STAGES[: STAGES.index(stage)]
    return sum(_ENCODER[s] for s in below) + _ENCODER[stage] + _DECODER[stage]


def _classifier_floats(architecture: str) -> int:
    encoders = STAGES if architecture == "stacked" else STAGES[:1]
    return sum(_ENCODER[s] for s in encoders) + _HEAD[architecture]


def batch_memory_mb(kind: str, config: BaseModel) -> float:
    """Estimated memory (MiB) of one training step at the job's batch size, largest stage;
    0 for a kind whose models this module does not know."""
    if kind == "pretrain":
        steps = [(_stage_floats(s), config.stage(s).batch_size) for s in STAGES]
    elif kind == "tune":
        steps = [(_stage_floats(config.stage), config.batch_size)]
    elif kind == "finetune":
        steps = [(_classifier_floats(config.model_architecture), config.batch_size)]
    else:
        return 0.0
    worst = max(floats * batch for floats, batch in steps)
    return worst * BYTES_PER_FLOAT * TRAINING_FACTOR / 2**20


def total_epochs(kind: str, config: BaseModel) -> int:
    """Epochs the job may train at most: its stage plan summed (a tune: trials x epochs)."""
    return sum(kinds.get(kind).plan(config).values())


def train_images(config: BaseModel, n_train: int) -> int:
    """Images in the training part of the split: of the data set's training images, or of
    a quick run's stratified sample of them (the validation fraction is held out either
    way, as sklearn rounds it: up)."""
    cap = getattr(config, "max_train_images", None)
    pool = n_train if cap is None else min(cap, n_train)
    return pool - math.ceil(config.validation_fraction * pool)


def images_per_epoch(kind: str, config: BaseModel, n_train: int) -> dict[str, int]:
    """Training images one epoch of each planned stage sees (what an ETA multiplies by its
    epochs): the split's training part, cut to `steps_per_epoch` batches in a quick run."""
    train = train_images(config, n_train)
    limit = getattr(config, "steps_per_epoch", None)
    out = {}
    for stage in kinds.get(kind).plan(config):
        batch = config.stage(stage).batch_size if kind == "pretrain" else config.batch_size
        steps = math.ceil(train / batch) if limit is None else min(math.ceil(train / batch), limit)
        out[stage] = min(train, steps * batch)
    return out
