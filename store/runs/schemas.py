"""What the API takes and returns for runs; parameters are validated by jobspec's models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from jobspec import ablations, kinds
from jobspec.scheduling import DEFAULT_PRIORITY, PRIORITY_MAX, PRIORITY_MIN
from jobspec.status import AttemptOutcome, RunStatus
from jobspec.text import DatasetName, RunName, SearchText, Tag
from store.base import JSONObject
from store.runs import search
from store.runs.seeds import Seeds


def _registered(kind: str) -> str:
    """A kind from the registry (read per request, so every registered kind is accepted)."""
    known = kinds.names()
    if kind not in known:
        raise ValueError(f"unknown kind; should be one of {', '.join(known)}")
    return kind


Kind = Annotated[
    str,
    AfterValidator(_registered),
    Field(json_schema_extra=lambda schema: schema.update(enum=list(kinds.names()))),
]

# A run's priority: higher starts first (store/scheduler.py). The database holds
# PRIORITY_MIN..PRIORITY_MAX; what a token may ask for is a setting, checked at launch
# (store/runs/limits.py check_priority: STACKLAB_MAX_PRIORITY, STACKLAB_PRIORITY_LIMITS).
Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX, strict=True)]
PRIORITY_HELP = "Higher starts first (default 0); bounded per token by a setting"
# A GPU's memory a run asks for, in MB: positive, and below any GPU made (16 TB).
GpuMemory = Annotated[int, Field(gt=0, le=16_000_000, strict=True)]


class RunCreate(BaseModel):
    """A request to launch a run (or, for tune with parallel > 1, a group of them)."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    dataset: DatasetName = Field(..., description="Name of a data set in the store")
    name: RunName | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=1000)
    params: JSONObject = Field(default_factory=dict, description="The job's parameters (jobspec)")
    parent_run_id: int | None = Field(
        None, description="Pretrain run whose weights a finetune (or an ae02/ae03 tune) uses"
    )
    parallel: int = Field(1, ge=1, le=1000, description="Tune: workers sharing one study")
    source_run_id: int | None = Field(
        None,
        description="The run whose settings this one was launched from (a study's tune run, "
        "for its page's lineage)",
    )
    priority: Priority = Field(DEFAULT_PRIORITY, description=PRIORITY_HELP)
    needs_gpu: bool = Field(False, strict=True, description="Run only on a worker with a GPU")
    min_gpu_memory_mb: GpuMemory | None = Field(
        None, description="Run only on a worker whose GPU has at least this much memory (MB)"
    )


class AugmentationStudyCreate(BaseModel):
    """The same finetune with augmentation off and on, over several seeds, as one group."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName
    name: RunName | None = None
    params: JSONObject = Field(
        default_factory=dict, description="Finetune parameters (augment is set)"
    )
    parent_run_id: int | None = None
    seeds: Seeds
    priority: Priority = Field(DEFAULT_PRIORITY, description=f"Every run's. {PRIORITY_HELP}")


class AblationCreate(BaseModel):
    """One factor of a finetune switched between its two arms, over several seeds, as one
    group; every other setting shared, one train/validation split for all seeds."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetName
    factor: str = Field(
        ...,
        max_length=100,
        description="augmentation, pretraining, encoder, class_weights or freeze_encoder",
        json_schema_extra={"enum": list(ablations.FACTORS)},
    )
    name: RunName | None = None
    params: JSONObject = Field(default_factory=dict, description="Shared finetune parameters")
    parent_run_id: int | None = Field(None, description="The pretrain run the encoders come from")
    seeds: Seeds
    split_seed: Annotated[int, Field(ge=0)] | Literal["per_seed"] | None = Field(
        None,
        description="The seed of the one train/validation split every seed uses; null: the "
        'parent pretrain\'s split (else 0); "per_seed": each seed its own split',
    )
    metric: str | None = Field(
        None,
        max_length=100,
        description="What the verdict is about: accuracy, balanced_accuracy, macro_f1 or "
        "minority_recall (default: balanced accuracy on imbalanced training data)",
        json_schema_extra={"enum": [*ablations.STUDY_METRICS, None]},
    )
    priority: Priority = Field(DEFAULT_PRIORITY, description=f"Every run's. {PRIORITY_HELP}")


class RunRead(BaseModel):
    """A run as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    name: str
    tags: list[str]
    status: RunStatus
    params: JSONObject
    seed: int
    dataset_id: int
    parent_run_id: int | None
    group_id: int | None
    study_name: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    worker_host: str | None
    device: str | None
    versions: JSONObject
    progress: JSONObject
    result: JSONObject
    error: str | None
    traceback: str | None
    attempts: int
    max_attempts: int
    retries_left: int
    queued_at: datetime | None
    sent_at: datetime | None
    checkpoint: JSONObject | None = Field(
        None, description="{stage, epoch}: where a re-try resumes"
    )
    launched_by: str | None = Field(None, description="Name of the token that launched it")
    notes: str | None = Field(None, description="The researcher's notes (markdown)")
    source_run_id: int | None = Field(
        None, description="The run (a tune) whose settings this one was launched from"
    )
    archived: bool = Field(False, description="Hidden from the runs list unless asked for")
    priority: int = Field(DEFAULT_PRIORITY, description="Higher starts first")
    needs_gpu: bool = Field(False, description="Runs only on a worker with a GPU")
    min_gpu_memory_mb: int | None = Field(None, description="GPU memory it needs (MB)")
    set_aside_for: int | None = Field(
        None, description="Running, asked to step aside for this queued run at its next epoch"
    )
    warnings: list[str] = Field(
        default_factory=list, description="What the launch warned about (in its response only)"
    )
    # A running run's, as GET /api/runs/{id} fills them in (the queue panel's figures).
    eta_seconds: float | None = Field(None, description="Seconds left (null: unknown)")
    eta_source: str | None = Field(None, description="own epochs, measured, default or worker")
    eta_note: str | None = Field(None, description='Why the ETA is unknown ("worker silent")')
    heard_seconds_ago: float | None = Field(
        None, description="Seconds since its worker's last heartbeat (the database's clock)"
    )
    worker_silent: bool = Field(False, description="No heartbeat for two heartbeat periods")
    heard_at: datetime | None = Field(
        None,
        description="Its last sign of life (the database's clock): a silent run's "
        "duration stops there",
    )
    duration_seconds: float | None = Field(
        None,
        description="Seconds it ran, by the database's clock: to its end, to now while it "
        "runs, or to its last sign of life once its worker is silent (null: not started)",
    )


class AttemptRead(BaseModel):
    """One try at a run."""

    model_config = ConfigDict(from_attributes=True)

    number: int
    worker_host: str | None
    device: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: AttemptOutcome
    resumed_from: JSONObject | None
    note: str | None


class RequeueBody(BaseModel):
    """What a re-queue may change: its priority (left out: the run keeps its own)."""

    model_config = ConfigDict(extra="forbid")

    priority: Priority | None = Field(None, description=PRIORITY_HELP)


class RunPage(BaseModel):
    """One page of runs."""

    items: list[RunRead]
    total: int
    limit: int
    offset: int


class RunFilter(BaseModel):
    """Which runs a list shows: one model for every list (the API's and the runs page)."""

    kind: SearchText | None = Field(None, max_length=40, description="Job kind")
    status: Annotated[RunStatus | None, BeforeValidator(lambda v: v or None)] = Field(
        None, description="Run status (empty: any)"
    )
    group_id: int | None = Field(None, description="Runs launched together")
    tag: SearchText | None = Field(None, description="Has this tag")
    dataset: SearchText | None = Field(None, max_length=100, description="Trained on this data set")
    q: SearchText | None = Field(None, description="Name contains (any case)")
    archived: Literal["hide", "include", "only"] = Field(
        "hide", description="Archived runs: hidden (the default), shown too, or only them"
    )
    filter: Annotated[str | None, AfterValidator(search.check)] = Field(
        None,
        max_length=search.MAX_FILTER_CHARS,
        description="Clauses joined by `and` (store/runs/search.py), e.g. "
        "`param.learning_rate < 0.01 and metric.finetune/val_accuracy >= 0.6 and tag in (a, b)`",
    )

    def active(self) -> dict[str, object]:
        """The filters set, for links and forms (archived runs hidden is no filter: the default)."""
        return {
            key: value
            for key, value in self.model_dump().items()
            if value not in (None, "") and not (key == "archived" and value == "hide")
        }


class PageFilter(RunFilter):
    """RunFilter as the runs page takes it: a `filter` that does not parse is shown on the
    page (PageFilter.checked), not answered with an error page."""

    filter: str | None = Field(None, max_length=4 * search.MAX_FILTER_CHARS)

    def checked(self) -> tuple[RunFilter | None, str | None]:
        """(the RunFilter, None), or (None, why its filter does not parse)."""
        try:
            search.parse(self.filter)
        except search.FilterError as err:
            return None, str(err)
        return RunFilter.model_validate(self.model_dump()), None


class GroupRead(BaseModel):
    """Runs launched together, as pages and the API show them."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    name: str
    params: JSONObject
    created_at: datetime
