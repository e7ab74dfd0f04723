"""Limits of work: what one launch may ask for, checked before anything is created.

Each limit is a setting (store/settings.py, `STACKLAB_MAX_*`); a request past one is
refused with InvalidRequest naming the field, the value and the setting that bounds it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from jobspec import kinds
from jobspec.status import RunStatus
from store.base import JSONObject
from store.errors import InvalidRequest
from store.runs.models import Run
from store.settings import Settings


def over(field: str, what: str, limit: int, setting: str) -> InvalidRequest:
    return InvalidRequest(field, f"{what}; the limit is {limit:,} (STACKLAB_{setting.upper()})")


def check_labels(settings: Settings, *, name: str | None, tags: list[str]) -> None:
    """Name length, tag count and tag length."""
    if name is not None and len(name) > settings.max_name_length:
        what = f"{len(name):,} characters"
        raise over("name", what, settings.max_name_length, "max_name_length")
    if len(tags) > settings.max_tags:
        raise over("tags", f"{len(tags)} tags", settings.max_tags, "max_tags")
    for index, tag in enumerate(tags):
        if len(tag) > settings.max_tag_length:
            what = f"{len(tag):,} characters"
            raise over(f"tags.{index}", what, settings.max_tag_length, "max_tag_length")


def _fields_named(config: BaseModel, name: str, prefix: str = "params") -> list[tuple[str, int]]:
    """Every integer field called `name` in a job's config and its nested settings (a
    pretrain's per-stage epochs), by dotted path, so any kind's limits are checked."""
    out: list[tuple[str, int]] = []
    for key in type(config).model_fields:
        value = getattr(config, key)
        if key == name and isinstance(value, int):
            out.append((f"{prefix}.{key}", value))
        elif isinstance(value, BaseModel):
            out.extend(_fields_named(value, name, f"{prefix}.{key}"))
    return out


def check_params(settings: Settings, kind: str, config: BaseModel) -> None:
    """Epochs, trials, total epochs, batch size and its estimated memory."""
    for field, epochs in _fields_named(config, "epochs"):
        if epochs > settings.max_epochs:
            raise over(field, f"{epochs:,} epochs", settings.max_epochs, "max_epochs")
    job = kinds.get(kind)
    trials, trials_field = job.trials(config), f"params.{job.trials_field}"
    if trials is not None and trials > settings.max_trials:
        raise over(trials_field, f"{trials:,} trials", settings.max_trials, "max_trials")
    total = job.total_epochs(config)
    if total > settings.max_total_epochs:
        field = "params" if trials is None else trials_field
        what = f"the run would train up to {total:,} epochs in all"
        raise over(field, what, settings.max_total_epochs, "max_total_epochs")
    batches = _fields_named(config, "batch_size")
    for field, batch in batches:
        if batch > settings.max_batch_size:
            raise over(field, f"batch of {batch:,}", settings.max_batch_size, "max_batch_size")
    memory = job.batch_memory_mb(config)
    if memory > settings.max_batch_memory_mb:
        # The largest batch field, or the params (a kind may estimate with none so named).
        field = max(batches, key=lambda item: item[1])[0] if batches else "params"
        what = f"one training batch of this model needs about {memory:,.0f} MiB"
        raise over(field, what, settings.max_batch_memory_mb, "max_batch_memory_mb")


# Any constant both launches agree on: PostgreSQL's advisory lock of the queued totals.
QUEUE_LOCK = 0x5354_4B4C  # "STKL"


def lock_queue(session: Session) -> None:
    """PostgreSQL: one launch at a time counts what is queued and adds to it (a lock held to
    the end of the launch's transaction), so two launches never both fit in the last place.
    SQLite has no such lock short of its write lock: two launches at the very same moment
    may each pass with the other's runs not yet counted (at most one request's worth over)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUEUE_LOCK})


def check_count(
    settings: Settings, session: Session, *, runs: int, field: str, launched_by: str | None = None
) -> None:
    """Runs created by one request, and runs waiting or running after it: in all, and for
    the token that launches them when several tokens are configured."""
    lock_queue(session)
    if runs > settings.max_runs_per_request:
        what = f"this request would create {runs} runs"
        raise over(field, what, settings.max_runs_per_request, "max_runs_per_request")
    counted = select(func.count()).select_from(Run)
    _check_queued(settings, session, counted, runs, launched_by, "runs")


def planned_epochs(kind: str, params: JSONObject) -> int:
    """The epochs a stored run may train at most, from its parameters (0 when its kind is
    not installed here or its parameters no longer validate: nothing to count)."""
    job = kinds.find(kind)
    return 0 if job is None else sum(job.stage_plan(params).values())


def check_epochs(
    settings: Settings,
    session: Session,
    *,
    epochs: int,
    field: str,
    launched_by: str | None = None,
) -> None:
    """Epochs one request plans in all (every run it creates, each run's plan summed), and
    planned epochs of the runs queued or running after it: in all, and for the token that
    launches them when several tokens are configured. Call after check_count (its lock)."""
    if epochs > settings.max_request_epochs:
        what = f"this request would train up to {epochs:,} epochs in all"
        raise over(field, what, settings.max_request_epochs, "max_request_epochs")
    # Runs stored before migration 0009 have no planned_epochs (NULL): counted as 0.
    planned = select(func.coalesce(func.sum(func.coalesce(Run.planned_epochs, 0)), 0))
    _check_queued(settings, session, planned, epochs, launched_by, "epochs")


def _check_queued(
    settings: Settings,
    session: Session,
    measure: Select[Any],
    adds: int,
    launched_by: str | None,
    unit: str,
) -> None:
    """What the runs queued or running hold (`measure`: a count or a sum over runs) plus
    what this request adds, against max_queued_{unit} for everyone, and
    max_queued_{unit}_per_token for the token that launches them when several are set."""
    # A running run with a cancel asked for stops at its next batch: no longer work held.
    waiting = measure.where(Run.status.in_(RunStatus.active()), Run.cancel_requested.is_(False))
    scopes = [("the runs queued or running", waiting, f"max_queued_{unit}")]
    if launched_by is not None and len(settings.access_tokens) >= 2:
        mine = waiting.where(Run.launched_by == launched_by)
        scopes.append(
            (f"the runs of {launched_by!r} queued or running", mine, f"max_queued_{unit}_per_token")
        )
    for whose, query, setting in scopes:
        held: int = session.scalar(query) or 0
        limit = getattr(settings, setting)
        if held + adds > limit:
            what = f"{whose} hold {held:,} {unit} and this request adds {adds:,}"
            raise over(
                f"queued_{unit}", f"{what}; wait for some to finish or cancel some", limit, setting
            )


def check_seeds(settings: Settings, seeds: list[int]) -> None:
    """Seeds of an augmentation study: few enough, and each once."""
    if len(seeds) > settings.max_seeds:
        raise over("seeds", f"{len(seeds)} seeds", settings.max_seeds, "max_seeds")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise InvalidRequest("seeds", f"each seed once; repeated: {repeated}")


def check_priority(
    settings: Settings, priority: int, launched_by: str | None, field: str = "priority"
) -> None:
    """A priority above what the token may give (its STACKLAB_PRIORITY_LIMITS entry, else
    STACKLAB_MAX_PRIORITY) is refused, naming the ceiling and the setting that sets it."""
    ceiling = settings.priority_ceiling(launched_by)
    if priority <= ceiling:
        return
    whose = "the open site" if launched_by is None else f"token {launched_by!r}"
    if launched_by is not None and launched_by in settings.priority_limits:
        setting = f"STACKLAB_PRIORITY_LIMITS[{launched_by!r}]"
    else:
        setting = "STACKLAB_MAX_PRIORITY; per token: STACKLAB_PRIORITY_LIMITS"
    raise InvalidRequest(
        field, f"priority {priority} is above the ceiling of {whose}: {ceiling} ({setting})"
    )
