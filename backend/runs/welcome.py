"""The first run: one button that launches the demo experiment with quick settings.

A pretrain of the three autoencoders (one short epoch per stage), then an augmentation
ablation study on its encoder: the stacked classifier finetuned with augmentation off and
on, for two seeds. Both are queued at once; the study's finetunes wait for their parent.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from jobspec import builtin_kinds
from jobspec.stages import STAGES
from jobspec.text import DatasetName
from store.runs import ablations as ablation_launcher
from store.runs import launch as launcher
from store.runs.models import Run
from store.runs.schemas import AblationCreate, RunCreate

DEMO_DATASET = "demo"  # registered by `stacklab serve` (and `stacklab datasets`)
QUICK_IMAGES = 1500  # a stratified sample of the training images (max_train_images)
STAGE_EPOCHS = 1
FINETUNE_EPOCHS = 3
BATCH_SIZE = 32
SEEDS = [0, 1]
_STAGE = {"epochs": STAGE_EPOCHS, "batch_size": BATCH_SIZE}
# BatchNorm momentum 0.9: a few hundred batches are too few for Keras' 0.99 to settle.
PRETRAIN = {
    **{stage: _STAGE for stage in STAGES},
    "bn_momentum": 0.9,
    "max_train_images": QUICK_IMAGES,
}
FINETUNE = {
    "epochs": FINETUNE_EPOCHS,
    "batch_size": BATCH_SIZE,
    "bn_momentum": 0.9,
    "max_train_images": QUICK_IMAGES,
}
# How fast 2 CPU cores train the stacked classifier (bench/train_overhead.py: ~70 img/s),
# and what each run spends outside its epochs (start, data, test evaluation).
CPU_IMAGES_PER_SECOND = 70.0
RUN_OVERHEAD_SECONDS = 15.0
VALIDATION_FRACTION = 0.1  # the jobs' default


class DemoCreate(BaseModel):
    """Which data set the demo trains on (the built-in demo unless another is named)."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName = Field(DEMO_DATASET)


def plan(n_train: int | None) -> dict:
    """What the demo will run and roughly how long it takes on 2 CPU cores."""
    images = min(n_train or QUICK_IMAGES, QUICK_IMAGES)
    trained = images * (1 - VALIDATION_FRACTION)
    finetunes = 2 * len(SEEDS)
    image_epochs = trained * (3 * STAGE_EPOCHS + finetunes * FINETUNE_EPOCHS)
    runs = 1 + finetunes
    seconds = image_epochs / CPU_IMAGES_PER_SECOND + runs * RUN_OVERHEAD_SECONDS
    return {
        "images": images,
        "stage_epochs": STAGE_EPOCHS,
        "finetune_epochs": FINETUNE_EPOCHS,
        "batch_size": BATCH_SIZE,
        "seeds": len(SEEDS),
        "finetunes": finetunes,
        "runs": runs,
        "seconds": seconds,
        "minutes": max(1, round(seconds / 60)),  # a rough figure: no false precision
    }


def launch(*, session: Session, demo_in: DemoCreate, launched_by: str | None) -> dict:
    """Queue the demo's pretrain, then its study; a study refused cancels the pretrain."""
    pretrain_in = RunCreate(
        kind=builtin_kinds.PRETRAIN.name,
        dataset=demo_in.dataset,
        name="demo: pretrain",
        tags=["demo"],
        params=PRETRAIN,
    )
    pretrain = launcher.launch(session=session, run_in=pretrain_in, launched_by=launched_by)[0]
    study_in = AblationCreate(
        dataset=demo_in.dataset,
        factor="augmentation",
        name="demo: augmentation study",
        params=FINETUNE,
        parent_run_id=pretrain.id,
        seeds=SEEDS,
    )
    try:
        group = ablation_launcher.launch_ablation(
            session=session, study_in=study_in, launched_by=launched_by
        )
    except Exception:
        session.rollback()
        launcher.cancel(session=session, run_id=pretrain.id)  # no half demo left queued
        raise
    study = session.scalars(select(Run.id).where(Run.group_id == group.id).order_by(Run.id))
    return {
        "pretrain_id": pretrain.id,
        "group_id": group.id,
        "run_ids": [pretrain.id, *study],
        "url": f"/runs/{pretrain.id}",
        "study_url": f"/groups/{group.id}",
    }
