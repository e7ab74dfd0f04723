"""The first run: one button that launches the demo experiment with quick settings.

A pretrain of the three autoencoders (one short epoch per stage), then an augmentation
ablation study on its encoder: the stacked classifier finetuned with augmentation off and
on, for two seeds. Both are queued at once; the study's finetunes wait for their parent.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.groups import ablation
from jobspec import builtin_kinds, presets
from jobspec.stages import STAGES
from jobspec.status import RunStatus
from jobspec.text import DatasetName
from store.runs import ablations as ablation_launcher
from store.runs import launch as launcher
from store.runs.models import Run
from store.runs.schemas import AblationCreate, RunCreate
from store.runs.seeds import count_seeds

DEMO_DATASET = "demo"  # registered by `stacklab serve` (and `stacklab datasets`)
DEMO_PRETRAIN_NAME = "demo: pretrain"  # how the demo's pretrain is found again
DEMO_TAG = "demo"
# The "Quick look" preset's sample, batch and BatchNorm momentum (jobspec/presets.py), with
# fewer epochs: the demo must finish in minutes on a laptop's CPU.
QUICK_IMAGES = presets.QUICK_IMAGES  # a stratified sample of the training images
STAGE_EPOCHS = 1
FINETUNE_EPOCHS = 3
BATCH_SIZE = presets.QUICK_BATCH
SEED_COUNT = 2  # a count, as the form and the API read one: seeds 0 and 1
_STAGE = {"epochs": STAGE_EPOCHS, "batch_size": BATCH_SIZE}
# BatchNorm momentum 0.9: a few hundred batches are too few for Keras' 0.99 to settle.
PRETRAIN = {
    **{stage: _STAGE for stage in STAGES},
    "bn_momentum": presets.QUICK_BN_MOMENTUM,
    "max_train_images": QUICK_IMAGES,
}
FINETUNE = {
    "epochs": FINETUNE_EPOCHS,
    "batch_size": BATCH_SIZE,
    "bn_momentum": presets.QUICK_BN_MOMENTUM,
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
    finetunes = 2 * SEED_COUNT
    image_epochs = trained * (3 * STAGE_EPOCHS + finetunes * FINETUNE_EPOCHS)
    runs = 1 + finetunes
    seconds = image_epochs / CPU_IMAGES_PER_SECOND + runs * RUN_OVERHEAD_SECONDS
    return {
        "images": images,
        "stage_epochs": STAGE_EPOCHS,
        "finetune_epochs": FINETUNE_EPOCHS,
        "batch_size": BATCH_SIZE,
        "seeds": SEED_COUNT,
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
        name=DEMO_PRETRAIN_NAME,
        tags=[DEMO_TAG],
        params=PRETRAIN,
    )
    pretrain = launcher.launch(session=session, run_in=pretrain_in, launched_by=launched_by)[0]
    study_in = AblationCreate(
        dataset=demo_in.dataset,
        factor="augmentation",
        name="demo: augmentation study",
        params=FINETUNE,
        parent_run_id=pretrain.id,
        seeds=count_seeds(SEED_COUNT),
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


# --- After the demo: where `/` leads, and what the first-run page says next. ---

DEMO_RUNS = 1 + 2 * SEED_COUNT  # the pretrain, and both arms of each seed


def _demo_pretrain(session: Session) -> Run | None:
    """The latest demo pretrain (named and tagged as launch() makes it)."""
    found = session.scalars(
        select(Run).where(Run.name == DEMO_PRETRAIN_NAME).order_by(Run.id.desc()).limit(5)
    )
    return next((run for run in found if DEMO_TAG in (run.tags or [])), None)


def _demo_runs(session: Session, pretrain: Run) -> tuple[int | None, list[Run]]:
    """The demo's study (the first group among its pretrain's children, as launch() makes
    it) and its runs: the pretrain and that study's, not other runs built on the pretrain."""
    group_id = session.scalar(
        select(Run.group_id)
        .where(Run.parent_run_id == pretrain.id, Run.group_id.is_not(None))
        .order_by(Run.id)
        .limit(1)
    )
    if group_id is None:
        return None, [pretrain]
    study = session.scalars(select(Run).where(Run.group_id == group_id).order_by(Run.id))
    return group_id, [pretrain, *study]


def only_the_demo(session: Session) -> bool:
    """Whether the store holds no run but the latest demo's (read at most DEMO_RUNS + 1)."""
    ids = set(session.scalars(select(Run.id).limit(DEMO_RUNS + 1)))
    if not ids or len(ids) > DEMO_RUNS:
        return False
    pretrain = _demo_pretrain(session)
    if pretrain is None:
        return False
    return ids <= {run.id for run in _demo_runs(session, pretrain)[1]}


def home_path(session: Session) -> str:
    """Where `/` leads: the first-run page while the store is empty or holds only the demo
    (it says what the demo found and what to do next), else the runs table."""
    empty = session.scalar(select(Run.id).limit(1)) is None
    return "/welcome" if empty or only_the_demo(session) else "/runs"


def demo_state(session: Session) -> dict | None:
    """The latest demo: its runs' progress and, once its study has a verdict, the verdict
    and the next steps (None when no demo was launched)."""
    pretrain = _demo_pretrain(session)
    if pretrain is None:
        return None
    group_id, runs = _demo_runs(session, pretrain)
    finished = sum(run.status.is_finished for run in runs)
    state = {
        "pretrain_id": pretrain.id,
        "group_id": group_id,
        "runs": len(runs),
        "finished": finished,
        "failed": sum(run.status.is_finished and run.status != RunStatus.SUCCEEDED for run in runs),
        "done": finished == len(runs),
        "verdict": None,
        "study_url": f"/groups/{group_id}" if group_id is not None else None,
        "pretrain_url": f"/runs/{pretrain.id}",
    }
    if state["done"] and group_id is not None:
        study = ablation.study(session=session, group_id=group_id)
        state["verdict"] = study["verdict"]
        state["next"] = study["next"]["text"]
    return state
