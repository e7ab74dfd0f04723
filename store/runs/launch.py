"""Launching runs: check everything, create a request's rows in one transaction, commit,
then send. With the queue down nothing is created (QueueUnavailable: 503); a send that
fails after the commit leaves the run queued and unsent, and the reconciler sends it."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from jobspec import kinds
from jobspec.kinds import SplitPlan
from jobspec.status import RunStatus
from store import queue, scheduler
from store.base import JSONObject
from store.datasets import service as datasets_service
from store.datasets.models import DatasetRecord
from store.db import session_scope
from store.errors import FieldError, InvalidRequest, NotFound
from store.runs import leaks, limits
from store.runs import service as runs_service
from store.runs.models import Run, RunGroup
from store.runs.schemas import RunCreate
from store.settings import get_settings

log = logging.getLogger(__name__)
Args = ParamSpec("Args")
T = TypeVar("T")


def validate_params(kind: str, params: Mapping[str, Any]) -> BaseModel:
    """The job's parameters, or InvalidRequest naming every bad field."""
    try:
        config: BaseModel = kinds.get(kind).params(**params)
        return config
    except ValidationError as err:
        raise invalid(err, prefix=("params",)) from err


def invalid(err: ValidationError, prefix: tuple[str, ...] = ()) -> InvalidRequest:
    """Pydantic's whole list of errors as one refusal, each at its dotted field path."""
    return InvalidRequest.of(
        [
            FieldError(".".join([*prefix, *(str(part) for part in e["loc"])]), e["msg"], e["type"])
            for e in err.errors()
        ]
    )


def check_parent(
    session: Session, kind: str, config: BaseModel, parent_id: int | None
) -> Run | None:
    """The pretrain run whose weights this run needs: it must exist and be able to provide them."""
    needed = kinds.parent_stages(kind, config)
    if not needed:
        if parent_id is not None:
            raise InvalidRequest("parent_run_id", "this run uses no pretrained weights")
        return None
    if parent_id is None:
        raise InvalidRequest("parent_run_id", f"needs a pretrain run (for {', '.join(needed)})")
    try:
        parent = runs_service.get_run(session, parent_id)
    except NotFound as err:
        raise InvalidRequest("parent_run_id", f"run {parent_id} does not exist") from err
    check_can_provide(parent, needed)
    return parent


def check_can_provide(parent: Run, needed: tuple[str, ...]) -> None:
    """A parent's kind says what it gives its children: a finished parent must have
    provided every needed stage (its kind reads its result), a queued or running one must
    plan them (the task waits for it); a kind that roots no experiment, or is not
    installed here, gives nothing."""
    job = kinds.find(parent.kind)
    if job is None or not job.features.experiment_root:
        raise InvalidRequest("parent_run_id", not_a_parent(parent))
    if parent.status.is_finished:
        have, verb = job.provides(parent.result or {}), "did not train"
    else:
        have, verb = tuple(job.stage_plan(parent.params)), "does not train"
    missing = [s for s in needed if s not in have]
    if missing:
        raise InvalidRequest(
            "parent_run_id",
            f"{parent.kind} run {parent.id} ({parent.status}) {verb} {', '.join(missing)}",
        )


def not_a_parent(parent: Run) -> str:
    """Why a run cannot be a parent: its kind roots no experiment."""
    roots = " or ".join(kinds.having(lambda f: f.experiment_root)) or "parent"
    return f"run {parent.id} is a {parent.kind}, not a {roots}"


@dataclass(frozen=True)
class _Plan:
    """A launch request with everything checked: what _create needs and nothing else."""

    run_in: RunCreate
    config: BaseModel
    dataset_id: int
    parent_id: int | None
    warnings: tuple[str, ...] = ()

    @property
    def epochs(self) -> int:
        """Epochs each run of the request may train at most (its kind's plan summed)."""
        return kinds.get(self.run_in.kind).total_epochs(self.config)


QUICK_TAG = "quick"  # tags a run that trains on fewer images or batches than it could


def check_request(session: Session, run_in: RunCreate) -> _Plan:
    """Every check of one request, before anything is created: InvalidRequest naming every
    problem found (the parent is checked once the parameters are valid)."""
    settings = get_settings()
    errors: list[FieldError] = []

    def check(step: Callable[Args, T], *args: Args.args, **kwargs: Args.kwargs) -> T | None:
        try:
            return step(*args, **kwargs)
        except InvalidRequest as err:
            errors.extend(err.errors)
            return None

    check(limits.check_labels, settings, name=run_in.name, tags=run_in.tags)
    config = check(validate_params, run_in.kind, run_in.params)
    if config is not None:
        check(limits.check_params, settings, run_in.kind, config)
    if run_in.parallel > settings.max_parallel:
        what = f"{run_in.parallel} parts"
        errors.extend(limits.over("parallel", what, settings.max_parallel, "max_parallel").errors)
    dataset = check(dataset_by_name, session, run_in.dataset)
    if config is not None and dataset is not None:
        check(check_quick, dataset, kinds.get(run_in.kind).split(config))
    parent = None
    if config is not None:
        parent = check(check_parent, session, run_in.kind, config, run_in.parent_run_id)
    if run_in.parallel > 1 and not kinds.features(run_in.kind).parallel:
        sharing = ", ".join(kinds.having(lambda f: f.parallel)) or "no"
        errors.append(FieldError("parallel", f"only {sharing} runs share work across workers"))
    check(_source, session, run_in.source_run_id)
    if errors or config is None or dataset is None:  # no config or data set: errors say why
        raise InvalidRequest.of(errors)
    warnings = tuple(dataset_warnings(session, parent, dataset))
    if parent is not None:  # its pretrain's training images among its validation images
        params = config.model_dump(mode="json")
        leak = leaks.run_warning(parent=parent, params=params, n_train=dataset.n_train)
        warnings += (leak,) if leak else ()
    return _Plan(run_in, config, dataset.id, parent.id if parent else None, warnings)


def _source(session: Session, source_run_id: int | None) -> Run | None:
    """The run whose settings this one was launched from (a study's tune), when named."""
    if source_run_id is None:
        return None
    try:
        return runs_service.get_run(session, source_run_id)
    except NotFound as err:
        raise InvalidRequest("source_run_id", f"run {source_run_id} does not exist") from err


def check_quick(dataset: DatasetRecord, split: SplitPlan) -> None:
    """A quick run's image cap (its kind's split plan) leaves every class in both parts of
    the split."""
    cap = split.max_train_images
    counts = [c for c in (dataset.train_counts or {}).values() if c > 0]
    if cap is None or cap >= sum(counts):
        return
    fraction = split.validation_fraction
    classes = len(counts)
    least = (
        max(2 * classes, math.ceil(classes / fraction), math.ceil(classes / (1 - fraction)))
        if fraction > 0
        else classes
    )
    if cap < least:
        raise InvalidRequest(
            "params.max_train_images",
            f"{cap} images cannot be split {fraction:.0%} for validation with every one of "
            f"{dataset.name}'s {classes} classes on both sides: use at least {least}",
        )


def dataset_warnings(
    session: Session, parent: Run | None, dataset: DatasetRecord | None
) -> list[str]:
    """What a launch should say but not refuse: weights learnt on another data set."""
    if parent is None or dataset is None or parent.dataset_id == dataset.id:
        return []
    theirs = datasets_service.get(session, parent.dataset_id).name
    return [
        f"Pretrain run #{parent.id} learnt its encoder on data set {theirs!r}, not "
        f"{dataset.name!r}: its features were fitted to other images (allowed, but is it "
        "what you meant?)."
    ]


def create_rows(
    session: Session, plan: _Plan, group: RunGroup | None, launched_by: str | None
) -> list[Run]:
    """The run rows of a checked request (and a parallel tune's group), flushed, not committed."""
    run_in = plan.run_in
    limits.check_priority(get_settings(), run_in.priority, launched_by)
    if run_in.parallel > 1 and group is None:
        name = run_in.name or f"parallel {run_in.kind}"
        group = RunGroup(kind=run_in.kind, name=name, params={})
        session.add(group)
        session.flush()
    runs = []
    for part in range(run_in.parallel):
        run = runs_service.create_run(
            session=session,
            kind=run_in.kind,
            name=run_in.name or run_in.kind,
            tags=_tags(run_in.tags, kinds.get(run_in.kind).split(plan.config)),
            params=plan.config.model_dump(mode="json"),
            seed=getattr(plan.config, "seed", 0),
            dataset_id=plan.dataset_id,
            parent_run_id=plan.parent_id,
            group_id=group.id if group else None,
            launched_by=launched_by,
            source_run_id=run_in.source_run_id,
            planned_epochs=plan.epochs,
            priority=run_in.priority,
            needs_gpu=run_in.needs_gpu,
            min_gpu_memory_mb=run_in.min_gpu_memory_mb,
        )
        run.warnings = list(plan.warnings)  # said in the response, not stored
        if run_in.name is None:
            run.name = f"{run_in.kind} #{run.id}"
        if run_in.parallel > 1:
            run.name = f"{run.name} (worker {part + 1}/{run_in.parallel})"
        runs.append(run)
    if kinds.features(run_in.kind).study:  # one study per run, or per group of parts
        owner = f"group {group.id}" if group else f"run {runs[0].id}"
        study, warning = study_name(session, plan.config, owner)
        for run in runs:
            run.study_name = study
            run.params = {**run.params, STUDY_NAME_FIELD: study}  # what the worker runs
            run.warnings = [*run.warnings, *([warning] if warning else [])]
    session.flush()
    return runs


STUDY_NAME_FIELD = "study_name"  # a study kind's params field naming its Optuna study
STUDY_NAME_LENGTH = 200  # runs.study_name's length


def study_name(session: Session, config: BaseModel, owner: str) -> tuple[str, str | None]:
    """The name of a new run's Optuna study: the one its params give, or, when another
    run's study already has it, it followed by `owner` ("run 12", "group 3"); and a warning
    when a name someone typed (not the field's default) had to change."""
    wanted = str(getattr(config, STUDY_NAME_FIELD, "") or "") or "study"
    default = type(config).model_fields.get(STUDY_NAME_FIELD)
    typed = default is None or wanted != default.default

    def holder(name: str) -> int | None:
        return session.scalar(select(Run.id).where(Run.study_name == name).limit(1))

    taken = holder(wanted)
    if taken is None:
        return wanted, None
    suffix, extra = f" ({owner})", 1
    name = f"{wanted[: STUDY_NAME_LENGTH - len(suffix)]}{suffix}"
    while holder(name) is not None:  # someone typed that very name: count on
        extra += 1
        suffix = f" ({owner}, {extra})"
        name = f"{wanted[: STUDY_NAME_LENGTH - len(suffix)]}{suffix}"
    warning = f"Study name {wanted!r} is run #{taken}'s study: this one is {name!r}."
    return name, warning if typed else None


def _tags(tags: list[str], split: SplitPlan) -> list[str]:
    """The request's tags, "quick" kept exactly on runs its kind's split limits to fewer
    images or batches (a clone of a quick run with the limits taken out loses it)."""
    plain = [tag for tag in tags if tag != QUICK_TAG]
    return [*plain, QUICK_TAG] if split.quick else plain


def launch(
    *,
    session: Session,
    run_in: RunCreate,
    group: RunGroup | None = None,
    launched_by: str | None = None,
) -> list[Run]:
    """Check, create the run(s) in one transaction, commit, send. A refusal leaves nothing.
    `launched_by`: the name of the token the request came with."""
    plan = check_request(session, run_in)
    settings = get_settings()
    limits.check_priority(settings, run_in.priority, launched_by)
    limits.check_count(
        settings, session, runs=run_in.parallel, field="parallel", launched_by=launched_by
    )
    limits.check_epochs(
        settings,
        session,
        epochs=run_in.parallel * plan.epochs,  # each part of a parallel tune runs its trials
        field="parallel" if run_in.parallel > 1 else "params",
        launched_by=launched_by,
    )
    queue.check()  # the queue is down: say so (503) before anything is created
    runs = create_rows(session, plan, group, launched_by)
    session.commit()  # rows first: a worker may pick the task up at once
    send_runs(session, runs)
    return runs


def send_runs(session: Session, runs: list[Run]) -> None:
    """Send each committed run's task and note it sent. A failed send leaves the run queued
    and unsent, for the reconciler to send again; the request itself succeeded."""
    for number, run in enumerate(runs):
        try:
            task_id = queue.enqueue(run.kind, run.id)
        except queue.QueueUnavailable as err:
            unsent = [r.id for r in runs[number:]]
            log.warning(
                "runs %s committed but not sent (%s); the reconciler sends them", unsent, err
            )
            break  # the broker just failed: the rest would wait out the same timeout
        runs_service.mark_sent(session=session, run_id=run.id, task_id=task_id)
    session.commit()
    decide_set_asides()


def decide_set_asides() -> None:
    """After a launch, re-queue or priority change has committed: whether a running run
    must step aside for it is decided now (store.scheduler.preempt), in a short session of
    its own, not at the next upkeep round. A failure is logged; the request succeeded, and
    the upkeep decides again."""
    try:
        with session_scope() as session:
            marked = scheduler.preempt(session, get_settings())
        for mark in marked:
            log.info("run %s steps aside for run %s", mark.run_id, mark.for_run_id)
    except Exception:  # never the request's failure: the change itself is committed
        log.exception("deciding set-asides after a change failed; the upkeep decides again")


def cancel(*, session: Session, run_id: int) -> Run:
    """Cancel a queued or running run. The flag in the database is what counts."""
    run = runs_service.request_cancel(session=session, run_id=run_id)
    session.commit()
    if run.status == RunStatus.CANCELLED and run.task_id:
        try:  # only saves a worker the trip: it finds the run cancelled anyway
            queue.revoke(run.task_id)
        except queue.QueueUnavailable as err:
            log.warning("run %s cancelled; revoking its task failed: %s", run_id, err)
    return run


def requeue(
    *,
    session: Session,
    run_id: int,
    fresh: bool = False,
    priority: int | None = None,
    requested_by: str | None = None,
) -> Run:
    """Run a failed or cancelled run again, under the same id, resuming from its checkpoint
    (fresh: from the start). Nothing is deleted here. `priority`: a new one (bounded by the
    requesting token's ceiling); None keeps the run's own."""
    run = runs_service.get_run(session, run_id)
    if priority is not None:
        limits.check_priority(get_settings(), priority, requested_by)
    if kinds.find(run.kind) is None:  # checked before the commit: it could not be sent
        raise InvalidRequest("kind", f"run {run_id} is a {run.kind}: {unknown_kind(run.kind)}")
    queue.check()
    # Take the run's row and read it again: of two re-queues at once the second sees the
    # first's (queued) and is refused, so one click or fifty send one message.
    runs_service.lock_run(session, run_id)
    session.refresh(run)
    runs_service.check_requeue(run)  # before the limits: a live run is refused as such
    settings = get_settings()
    launched_by = run.launched_by
    limits.check_count(settings, session, runs=1, field="run", launched_by=launched_by)
    if run.planned_epochs is None:  # stored before migration 0009: counted from now on
        run.planned_epochs = limits.planned_epochs(run.kind, run.params or {})
    epochs = run.planned_epochs
    limits.check_epochs(settings, session, epochs=epochs, field="run", launched_by=launched_by)
    run = runs_service.requeue(session=session, run_id=run_id, fresh=fresh, priority=priority)
    session.commit()
    send_runs(session, [run])
    return run


def unknown_kind(kind: str) -> str:
    """Why a stored run's kind cannot run here: its plug-in is not installed."""
    return (
        f"no job kind {kind!r} is installed in this server "
        f"(known: {', '.join(kinds.names())}; plug-ins come from {kinds.PLUGIN_ENV})"
    )


def clone(
    *,
    session: Session,
    run_id: int,
    edits: JSONObject | None = None,
    launched_by: str | None = None,
) -> Run:
    """A new run like an old one, with some parameters (or name, tags, parent) changed."""
    source = runs_service.get_run(session, run_id)
    edits = dict(edits or {})
    changes = edits.pop("params", None) or {}
    if not isinstance(changes, dict):
        raise InvalidRequest("params", "must be an object of parameter changes")
    fields = {
        "kind": source.kind,
        "dataset": edits.pop("dataset", None)
        or datasets_service.get(session, source.dataset_id).name,
        "name": edits.pop("name", None) or _clone_name(source.name),
        "tags": edits.pop("tags", source.tags),
        "params": _merge(source.params, changes),
        "parent_run_id": edits.pop("parent_run_id", source.parent_run_id),
        # kept unless given; the cloner's own ceiling applies (a clone is a new launch)
        "priority": edits.pop("priority", source.priority),
        "needs_gpu": edits.pop("needs_gpu", source.needs_gpu),
        "min_gpu_memory_mb": edits.pop("min_gpu_memory_mb", source.min_gpu_memory_mb),
    }
    if edits:
        raise InvalidRequest(next(iter(edits)), "cannot be changed when cloning")
    try:
        request = RunCreate(**fields)
    except ValidationError as err:
        raise invalid(err) from err
    return launch(session=session, run_in=request, launched_by=launched_by)[0]


def _clone_name(name: str) -> str:
    """'<name> (clone)', shortened to fit the name limit."""
    suffix = " (clone)"
    return name[: max(1, get_settings().max_name_length - len(suffix))] + suffix


def _merge(base: JSONObject, changes: JSONObject) -> JSONObject:
    out = dict(base)
    for key, value in changes.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def dataset_by_name(session: Session, name: str) -> DatasetRecord:
    """A data set record by name, or InvalidRequest naming the field."""
    try:
        return datasets_service.get_by_name(session, name)
    except NotFound as err:
        raise InvalidRequest("dataset", f"no data set named {name!r}") from err
