"""Runs, the groups they are launched in, their metrics and tuning trials."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import false as sql_false

from jobspec.scheduling import DEFAULT_PRIORITY, PRIORITY_MAX, PRIORITY_MIN
from jobspec.status import AttemptOutcome, RunStatus
from store.base import Base, JSONObject
from store.text_column import ShownList, ShownString, ShownText
from store.timeutil import utcnow
from store.vocabulary import known_values, vocabulary_column

QUEUED_WITHOUT_CANCEL = f"NOT (status = '{RunStatus.QUEUED.value}' AND cancel_requested)"
PRIORITY_RANGE = f"priority BETWEEN {PRIORITY_MIN} AND {PRIORITY_MAX}"


class RunGroup(Base):
    """Runs launched together: an ablation study, a parallel tune."""

    __tablename__ = "run_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(ShownString(200))
    params: Mapped[JSONObject] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CheckpointInfo(TypedDict):
    """Where a run's stored checkpoint stands (its bytes are an artifact)."""

    stage: str
    epoch: int
    attempt: int  # the attempt that saved it
    bytes: int
    saved_at: str  # ISO 8601, UTC


class Run(Base):
    """One pretrain, tune or finetune job, from queued to finished."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_created", "status", "created_at"),
        Index("ix_runs_kind_created", "kind", "created_at"),
        Index("ix_runs_launched_by_status", "launched_by", "status"),
        known_values("status", RunStatus),  # migration 0007
        # A cancel asked for on a queued run cancels it at once: never queued with one
        # pending, which no worker would claim (migration 0011; triggers on SQLite).
        CheckConstraint(QUEUED_WITHOUT_CANCEL, name="queued_without_cancel"),
        # The scheduler's pick (store/scheduler.py): queued runs by priority, then age.
        Index("ix_runs_status_priority_queued", "status", "priority", "queued_at"),
        Index("ix_runs_launched_by_started", "launched_by", "started_at"),
        CheckConstraint(PRIORITY_RANGE, name="priority_range"),  # migration 0012
        CheckConstraint("min_gpu_memory_mb IS NULL OR min_gpu_memory_mb > 0", name="gpu_memory"),
        # The runs table's default order and its sort by name, a page at a time (0013).
        Index("ix_runs_archived_created", "archived", "created_at", "id"),
        Index("ix_runs_created", "created_at", "id"),
        # /metrics counts runs by state and kind from this index alone (an index-only
        # scan, never the table's wide rows: backend/ops/gauges.py; migration 0015).
        Index("ix_runs_status_kind", "status", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(ShownString(200))
    tags: Mapped[list[str]] = mapped_column(ShownList, default=list)
    status: Mapped[RunStatus] = mapped_column(
        vocabulary_column(RunStatus), default=RunStatus.QUEUED
    )
    params: Mapped[JSONObject] = mapped_column(JSON, default=dict)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    parent_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("run_groups.id"), index=True)
    study_name: Mapped[str | None] = mapped_column(ShownString(200), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    task_id: Mapped[str | None] = mapped_column(String(64))
    worker_host: Mapped[str | None] = mapped_column(ShownString(200))
    device: Mapped[str | None] = mapped_column(ShownString(200))
    versions: Mapped[JSONObject] = mapped_column(JSON, default=dict)
    progress: Mapped[JSONObject] = mapped_column(JSON, default=dict)
    result: Mapped[JSONObject] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(ShownText)
    traceback: Mapped[str | None] = mapped_column(ShownText)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # the current attempt's number
    max_attempts: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    # Automatic re-tries left after a lost worker; a user's re-queue refills them.
    retries_left: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fresh_start: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Where the stored checkpoint stands (None: no checkpoint).
    checkpoint: Mapped[CheckpointInfo | None] = mapped_column(JSON)
    # The name of the token that launched the run (None on an open site).
    launched_by: Mapped[str | None] = mapped_column(ShownString(40))
    # The researcher's notes (markdown, shown escaped); a pretrain's are its experiment's.
    notes: Mapped[str | None] = mapped_column(ShownText)
    # The run whose settings this one was launched from (a tune's best trial), for lineage.
    # No foreign key (see migration 0006): deleting a run clears references to it.
    source_run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # Hidden from the runs list unless asked for; nothing else changes.
    archived: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sql_false(), index=True
    )
    # Epochs the run may train at most (its kind's plan), set at launch: the queued totals
    # are sums of it (store/runs/limits.py). NULL on runs stored before migration 0009.
    planned_epochs: Mapped[int | None] = mapped_column(Integer)
    # "Evaluate now" queued and not finished yet (backend/runs/partial.py): at most one.
    evaluation_queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    evaluation_task_id: Mapped[str | None] = mapped_column(String(64))
    # The scheduler (store/scheduler.py, migration 0012): higher starts first; a run may
    # ask for a GPU (and for at least this much GPU memory) and then goes only to a worker
    # that has it.
    priority: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_PRIORITY, server_default=str(DEFAULT_PRIORITY)
    )
    needs_gpu: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sql_false())
    min_gpu_memory_mb: Mapped[int | None] = mapped_column(Integer)
    # A running run asked to step aside at its next epoch boundary for this queued run
    # (of higher priority); cleared when it is claimed again. No foreign key (as source_run_id).
    set_aside_for: Mapped[int | None] = mapped_column(Integer)
    # The run's "best" as the runs table sorts by it, kept by store/runs/best.py (migration
    # 0016): the ranking key it is scored on and its score, signed so lower is better.
    best_key: Mapped[str | None] = mapped_column(String(200))
    best_score: Mapped[float | None] = mapped_column(Float)

    if TYPE_CHECKING:  # declared for the checker only: the ORM maps no such column
        # What the launch that created this run warned about, set on the new row for its
        # response (RunRead.warnings) and never stored; other rows do not have it.
        warnings: list[str]


# A page sorted by best walks one group (kind, key) at a time, best first or worst first,
# ties by id descending (backend/runs/best_sort.py; migration 0016).
Index("ix_runs_best_first", Run.kind, Run.best_key, Run.best_score, Run.id.desc())
Index("ix_runs_best_last", Run.kind, Run.best_key, Run.best_score.desc(), Run.id.desc())
# A page sorted by duration walks its finished runs on finish minus start, in seconds, as
# backend/runs/duration_sort.py writes it (migration 0016); the runs never started by id
# (started_at IS NULL). SQLite's twin, over julianday(), is the migration's alone: the
# models' comparison cannot tell a SQLite-only index from a missing one on PostgreSQL,
# and SQLite's reflection skips expression indexes.
Index(
    "ix_runs_duration_pg",
    func.extract("epoch", Run.finished_at - Run.started_at).label("seconds"),
    Run.id,
).ddl_if(dialect="postgresql")
Index("ix_runs_started_id", Run.started_at, Run.id)


class ResumePoint(TypedDict):
    """Where an attempt resumed: after this stage's epoch (its checkpoint)."""

    stage: str
    epoch: int


class RunAttempt(Base):
    """One try at a run: which worker, when, how it ended and where it resumed from."""

    __tablename__ = "run_attempts"
    __table_args__ = (known_values("outcome", AttemptOutcome),)  # migration 0007

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_host: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[AttemptOutcome] = mapped_column(
        vocabulary_column(AttemptOutcome), default=AttemptOutcome.RUNNING
    )
    resumed_from: Mapped[ResumePoint | None] = mapped_column(JSON)  # None: a fresh start
    note: Mapped[str | None] = mapped_column(ShownText)


class Metric(Base):
    """One value of one key at one step (epoch), MLflow-style."""

    __tablename__ = "metrics"
    # A duplicate (run, key, step) can never be stored, whatever any writer does.
    __table_args__ = (UniqueConstraint("run_id", "key", "step", name="uq_metrics_run_key_step"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[float] = mapped_column(Float)


class RunSample(Base):
    """One reading of one time series of a run (the worker's memory, CPU, GPU) at `t`
    seconds since its attempt's job started: a point in time, never an epoch (migration
    0008 moved the old "system/<name>" metric rows here)."""

    __tablename__ = "run_samples"
    # One reading per (run, attempt, key, second): a re-sent write changes nothing. The
    # constraint's index also serves reading one run's series in order.
    __table_args__ = (
        UniqueConstraint("run_id", "attempt", "key", "t", name="uq_run_samples_run_attempt_key_t"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(200))  # a bare name: "rss_mb", "cpu_percent"
    t: Mapped[float] = mapped_column(Float)  # seconds since the attempt's job started
    value: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[float] = mapped_column(Float)  # the worker's clock, for reading only


class MetricSummary(Base):
    """Latest and best value of one key of one run (best: min for losses, max otherwise)."""

    __tablename__ = "metric_summaries"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_value: Mapped[float] = mapped_column(Float)
    last_step: Mapped[int] = mapped_column(Integer)
    best_value: Mapped[float] = mapped_column(Float)
    best_step: Mapped[int] = mapped_column(Integer)
    # The value at the epoch whose model the run keeps (early stopping's restored epoch;
    # otherwise the last): what lists and compares call "best".
    kept_value: Mapped[float | None] = mapped_column(Float)
    kept_step: Mapped[int | None] = mapped_column(Integer)
    goal: Mapped[str] = mapped_column(String(3))  # "min" | "max"


# A key's kept value as the runs table sorts and filters by it (`metric.<key>`): the value
# at the kept epoch, else the last. Indexed with its key (migration 0013), so a sort by a
# metric walks the index a page at a time; queries must use this very expression.
def kept_value_of(summary: type[MetricSummary] | Any) -> ColumnElement[float]:
    """The kept value of `summary` (the MetricSummary entity or an alias of it)."""
    return func.coalesce(summary.kept_value, summary.last_value)


Index(
    "ix_metric_summaries_key_value",
    MetricSummary.key,
    kept_value_of(MetricSummary),
    MetricSummary.run_id,
)


class TuneTrial(Base):
    """One Optuna trial run by a tune run (the study itself lives in Optuna's tables)."""

    __tablename__ = "tune_trials"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    params: Mapped[JSONObject] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20))
    value: Mapped[float | None] = mapped_column(Float)
    intermediate: Mapped[JSONObject] = mapped_column(JSON, default=dict)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class RunParam(Base):
    """One job parameter of one run, flattened ("augmentation.zoom_range"), kept as rows so
    the runs table sorts and filters by any parameter a page at a time (migration 0013).
    Written with the run (store.runs.values); a number or a flag in num_value (a flag as
    1/0), text and flags in text_value (lists as JSON, cut to TEXT_CHARS)."""

    __tablename__ = "run_params"
    __table_args__ = (
        Index("ix_run_params_key_num", "key", "num_value", "run_id"),
        Index("ix_run_params_key_text", "key", "text_value", "run_id"),
    )

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    num_value: Mapped[float | None] = mapped_column(Float)
    text_value: Mapped[str | None] = mapped_column(String(200))
