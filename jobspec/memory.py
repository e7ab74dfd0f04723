"""Memory of one training batch, per image, of the models the built-in kinds train.

Pure arithmetic on the parameters, so the web can refuse a launch that would exhaust a
worker without importing Keras. The activation counts follow worker/ml/models.py (every
conv is followed by BatchNorm and ReLU, each keeping its output for the backward pass).
"""

from __future__ import annotations

from collections.abc import Iterable

from jobspec.stages import AE01, AE02, AE03, STAGES

BYTES_PER_FLOAT = 4
# Measured on TF-CPU 2.21 (peak RSS of two fit() steps at batch 32 and 256, per image):
# stacked classifier 5.3 MB, single 2.5 MB, AE02 4.6 MB: 1.0-1.5x the float32 activations.
TRAINING_FACTOR = 1.5

_ENCODER = {  # floats per image kept by each stage's encoder (conv, BN, ReLU, pool)
    AE01: 3 * 32 * 32 * 64,
    AE02: 3 * 32 * 32 * 128 + 16 * 16 * 128,
    AE03: 3 * 16 * 16 * 256 + 8 * 8 * 256,
}
_DECODER = {  # (upsampling,) conv, BN, ReLU back to the stage's input
    AE01: 3 * 32 * 32 * 3,
    AE02: 32 * 32 * 128 + 3 * 32 * 32 * 64,
    AE03: 16 * 16 * 256 + 3 * 16 * 16 * 128,
}
_HEAD = {
    "stacked": 2 * 8 * 8 * 512 + 512 + 3 * 1024,
    "single": 3 * 32 * 32 * 64 + 16 * 16 * 64 + 6 * 16 * 16 * 128 + 8 * 8 * 128 + 512 + 3 * 512,
}


def stage_floats(stage: str) -> int:
    """A pretrain stage's step: the frozen encoders below it, then its own autoencoder."""
    below = STAGES[: STAGES.index(stage)]
    return sum(_ENCODER[s] for s in below) + _ENCODER[stage] + _DECODER[stage]


def classifier_floats(architecture: str) -> int:
    """A classifier's step: its encoders, then its head."""
    encoders = STAGES if architecture == "stacked" else STAGES[:1]
    return sum(_ENCODER[s] for s in encoders) + _HEAD[architecture]


def worst_mb(steps: Iterable[tuple[int, int]]) -> float:
    """MiB of the largest of (floats per image, batch size) training steps."""
    worst = max((floats * batch for floats, batch in steps), default=0)
    return worst * BYTES_PER_FLOAT * TRAINING_FACTOR / 2**20
