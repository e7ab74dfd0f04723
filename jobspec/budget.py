"""What a job will cost before it runs: epochs in total, memory of one training batch and
the images of an epoch, each asked of the job's kind (jobspec.kinds) by name.

Pure arithmetic on the parameters, so the web can refuse a launch that would exhaust a
worker without importing Keras (the built-in models' arithmetic: jobspec/memory.py).
"""

from __future__ import annotations

from pydantic import BaseModel

from jobspec import kinds


def batch_memory_mb(kind: str, config: BaseModel) -> float:
    """Estimated memory (MiB) of one training step at the job's batch size, largest stage;
    0 for a kind that declares no estimate."""
    return kinds.get(kind).batch_memory_mb(config)


def total_epochs(kind: str, config: BaseModel) -> int:
    """Epochs the job may train at most: its stage plan summed (a tune: trials x epochs)."""
    return kinds.get(kind).total_epochs(config)


def images_per_epoch(kind: str, config: BaseModel, n_train: int) -> dict[str, int]:
    """Training images one epoch of each planned stage sees (what an ETA multiplies by its
    epochs): the split's training part, cut to `steps_per_epoch` batches in a quick run."""
    job = kinds.get(kind)
    return {stage: job.stage_images(config, stage, n_train)[0] for stage in job.plan(config)}
