"""Launching runs: check everything, create a request's rows in one transaction, commit,
then send. With the queue down nothing is created (QueueUnavailable: 503); a send that
fails after the commit leaves the run queued and unsent, and the reconciler sends it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from jobspec import ablations, kinds
from jobspec.stages import STAGES
from store import queue
from store.datasets import service as datasets_service
from store.errors import InvalidRequest, NotFound
from store.runs import limits
from store.runs import service as runs_service
from store.runs.models import FINISHED, Run, RunGroup
from store.runs.schemas import AblationCreate, AugmentationStudyCreate, RunCreate
from store.settings import get_settings

log = logging.getLogger(__name__)


def validate_params(kind: str, params: dict) -> BaseModel:
    """The job's parameters, or InvalidRequest naming the first bad field."""
    try:
        return kinds.get(kind).params(**params)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(["params", *(str(part) for part in first["loc"])])
        raise InvalidRequest(field, first["msg"]) from err


def check_parent(session: Session, kind: str, config: BaseModel, parent_id: int | None):
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
    if parent.kind != "pretrain":
        raise InvalidRequest("parent_run_id", f"run {parent_id} is a {parent.kind}, not a pretrain")
    if parent.status in FINISHED:  # queued or running parents are waited for by the task
        missing = [s for s in needed if s not in parent.result.get("trained_stages", [])]
        if missing:
            raise InvalidRequest(
                "parent_run_id",
                f"pretrain run {parent_id} ({parent.status}) did not train {', '.join(missing)}",
            )
    return parent


def _dataset_id(session: Session, name: str) -> int:
    try:
        return datasets_service.get_by_name(session, name).id
    except NotFound as err:
        raise InvalidRequest("dataset", f"no data set named {name!r}") from err


@dataclass(frozen=True)
class _Plan:
    """A launch request with everything checked: what _create needs and nothing else."""

    run_in: RunCreate
    config: BaseModel
    dataset_id: int
    parent_id: int | None


def _plan(session: Session, run_in: RunCreate) -> _Plan:
    """Every check of one request, before anything is created (InvalidRequest otherwise)."""
    settings = get_settings()
    limits.check_labels(settings, name=run_in.name, tags=run_in.tags)
    config = validate_params(run_in.kind, run_in.params)
    limits.check_params(settings, run_in.kind, config)
    if run_in.parallel > settings.max_parallel:
        what = f"{run_in.parallel} parts"
        raise limits.over("parallel", what, settings.max_parallel, "max_parallel")
    dataset_id = _dataset_id(session, run_in.dataset)
    parent = check_parent(session, run_in.kind, config, run_in.parent_run_id)
    if run_in.parallel > 1 and run_in.kind != "tune":
        raise InvalidRequest("parallel", "only tune runs share work across workers")
    return _Plan(run_in, config, dataset_id, parent.id if parent else None)


def _create(
    session: Session, plan: _Plan, group: RunGroup | None, launched_by: str | None
) -> list[Run]:
    """The run rows of a checked request (and a parallel tune's group), flushed, not committed."""
    run_in = plan.run_in
    if run_in.parallel > 1 and group is None:
        group = RunGroup(kind="tune", name=run_in.name or "parallel tune", params={})
        session.add(group)
        session.flush()
    runs = []
    for part in range(run_in.parallel):
        run = runs_service.create_run(
            session=session,
            kind=run_in.kind,
            name=run_in.name or run_in.kind,
            tags=run_in.tags,
            params=plan.config.model_dump(mode="json"),
            seed=getattr(plan.config, "seed", 0),
            dataset_id=plan.dataset_id,
            parent_run_id=plan.parent_id,
            group_id=group.id if group else None,
            launched_by=launched_by,
        )
        if run_in.name is None:
            run.name = f"{run_in.kind} #{run.id}"
        if run_in.parallel > 1:
            run.name = f"{run.name} (worker {part + 1}/{run_in.parallel})"
        runs.append(run)
    if run_in.kind == "tune":
        study = f"tune-group-{group.id}" if group else f"tune-run-{runs[0].id}"
        for run in runs:
            run.study_name = study
    session.flush()
    return runs


def launch(
    *,
    session: Session,
    run_in: RunCreate,
    group: RunGroup | None = None,
    launched_by: str | None = None,
) -> list[Run]:
    """Check, create the run(s) in one transaction, commit, send. A refusal leaves nothing.
    `launched_by`: the name of the token the request came with."""
    plan = _plan(session, run_in)
    limits.check_count(
        get_settings(), session, runs=run_in.parallel, field="parallel", launched_by=launched_by
    )
    queue.check()  # the queue is down: say so (503) before anything is created
    runs = _create(session, plan, group, launched_by)
    session.commit()  # rows first: a worker may pick the task up at once
    _send(session, runs)
    return runs


def _send(session: Session, runs: list[Run]) -> None:
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


def cancel(*, session: Session, run_id: int) -> Run:
    """Cancel a queued or running run. The flag in the database is what counts."""
    run = runs_service.request_cancel(session=session, run_id=run_id)
    session.commit()
    if run.status == "cancelled" and run.task_id:
        try:  # only saves a worker the trip: it finds the run cancelled anyway
            queue.revoke(run.task_id)
        except queue.QueueUnavailable as err:
            log.warning("run %s cancelled; revoking its task failed: %s", run_id, err)
    return run


def requeue(*, session: Session, run_id: int, fresh: bool = False) -> Run:
    """Run a failed or cancelled run again, under the same id, resuming from its checkpoint
    (fresh: from the start). Nothing is deleted here."""
    run = runs_service.get_run(session, run_id)
    limits.check_count(get_settings(), session, runs=1, field="run", launched_by=run.launched_by)
    queue.check()
    run = runs_service.requeue(session=session, run_id=run_id, fresh=fresh)
    session.commit()
    _send(session, [run])
    return run


def clone(
    *, session: Session, run_id: int, edits: dict | None = None, launched_by: str | None = None
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
    }
    if edits:
        raise InvalidRequest(next(iter(edits)), "cannot be changed when cloning")
    try:
        request = RunCreate(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        raise InvalidRequest(".".join(str(p) for p in first["loc"]), first["msg"]) from err
    return launch(session=session, run_in=request, launched_by=launched_by)[0]


def _clone_name(name: str) -> str:
    """'<name> (clone)', shortened to fit the name limit."""
    suffix = " (clone)"
    return name[: max(1, get_settings().max_name_length - len(suffix))] + suffix


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def launch_augmentation_study(
    *, session: Session, study_in: AugmentationStudyCreate, launched_by: str | None = None
) -> RunGroup:
    """The augmentation ablation (the study's first API, kept for its callers)."""
    request = AblationCreate(factor="augmentation", **study_in.model_dump())
    return launch_ablation(session=session, study_in=request, launched_by=launched_by)


def launch_ablation(
    *, session: Session, study_in: AblationCreate, launched_by: str | None = None
) -> RunGroup:
    """A factor's two arms for each seed, as one group: all runs or none.

    Every setting but the factor is shared; the arms of a seed share its seed (so the
    initialisation of what both build and the order of the data), and all seeds share one
    train/validation split unless the request asks for a split per seed."""
    settings = get_settings()
    try:
        factor = ablations.factor(study_in.factor)
    except KeyError as err:
        raise InvalidRequest("factor", err.args[0]) from err
    limits.check_labels(settings, name=study_in.name, tags=[])
    limits.check_seeds(settings, study_in.seeds)
    limits.check_count(
        settings, session, runs=2 * len(study_in.seeds), field="seeds", launched_by=launched_by
    )
    dataset = _dataset(session, study_in.dataset)
    metric = study_in.metric or ablations.default_metric(dataset.train_counts or {})
    if metric not in ablations.STUDY_METRICS:
        known = ", ".join(ablations.STUDY_METRICS)
        raise InvalidRequest("metric", f"{metric!r} is not a study metric (known: {known})")
    parent = _study_parent(session, factor, study_in)
    base = validate_params("finetune", study_in.params).model_dump(mode="json")
    split_seed, warnings = _study_split(study_in, parent, base)
    base["split_seed"] = split_seed
    context = ablations.Context(parent_kernel_sizes=_kernel_sizes(parent))
    name = study_in.name or f"{factor.label.lower()} study"
    plans = []
    for seed in study_in.seeds:
        for arm in factor.arms:
            params = {**factor.params(base, arm.name, context), "seed": seed}
            config = validate_params("finetune", params)
            needs_parent = bool(kinds.parent_stages("finetune", config))
            plans.append(
                _plan(
                    session,
                    RunCreate(
                        kind="finetune",
                        dataset=study_in.dataset,
                        name=f"{name}: {arm.label}, seed {seed}",
                        tags=[f"factor:{factor.name}", f"arm:{arm.name}", f"seed:{seed}"],
                        params=params,
                        parent_run_id=parent.id if parent and needs_parent else None,
                    ),
                )
            )
    queue.check()
    group = RunGroup(
        kind=ablations.GROUP_KIND,
        name=name,
        params={
            "factor": factor.name,
            "arms": [arm.name for arm in factor.arms],
            "base": factor.shared(base),
            "seeds": study_in.seeds,
            "split_seed": split_seed,
            "metric": metric,
            "metric_chosen": study_in.metric is not None,
            "parent_run_id": parent.id if parent else None,
            "warnings": warnings,
        },
    )
    session.add(group)
    session.flush()
    runs = [run for plan in plans for run in _create(session, plan, group, launched_by)]
    session.commit()  # the group and every run at once
    _send(session, runs)
    return group


def _dataset(session: Session, name: str):
    try:
        return datasets_service.get_by_name(session, name)
    except NotFound as err:
        raise InvalidRequest("dataset", f"no data set named {name!r}") from err


def _study_parent(session: Session, factor, study_in: AblationCreate) -> Run | None:
    """The pretrain the study's encoders come from; required where an arm loads one."""
    if study_in.parent_run_id is None:
        if factor.needs_parent:
            raise InvalidRequest(
                "parent_run_id", f"a {factor.label.lower()} study needs a pretrain run"
            )
        return None
    if factor.name == "freeze_encoder" and study_in.params.get("encoder") == "scratch":
        raise InvalidRequest(
            "params.encoder", "a frozen-encoder study needs a pretrained encoder, not scratch"
        )
    try:
        parent = runs_service.get_run(session, study_in.parent_run_id)
    except NotFound as err:
        missing = f"run {study_in.parent_run_id} does not exist"
        raise InvalidRequest("parent_run_id", missing) from err
    if parent.kind != "pretrain":
        raise InvalidRequest("parent_run_id", f"run {parent.id} is a {parent.kind}, not a pretrain")
    return parent


def _study_split(study_in: AblationCreate, parent: Run | None, base: dict):
    """The split seed every seed shares (None: each seed its own) and what to warn about."""
    warnings: list[str] = []
    if study_in.split_seed == "per_seed":
        warnings.append(
            "Each seed has its own train/validation split: seeds differ in split as well as "
            "in initialisation."
        )
        return None, warnings
    parent_split = parent_fraction = None
    if parent is not None:
        params = parent.params or {}
        parent_split = params.get("split_seed")
        parent_split = params.get("seed", 0) if parent_split is None else parent_split
        parent_fraction = params.get("validation_fraction", 0.1)
    split_seed = study_in.split_seed
    if split_seed is None:
        split_seed = parent_split if parent_split is not None else 0
    if parent is not None and (split_seed, base["validation_fraction"]) != (
        parent_split,
        parent_fraction,
    ):
        warnings.append(
            f"Pretrain run #{parent.id} split its training images with seed {parent_split} "
            f"and {parent_fraction:.0%} validation; this study uses seed {split_seed} and "
            f"{base['validation_fraction']:.0%}: some validation images of the study were "
            "training images of the pretrain, so validation scores are optimistic (test "
            "scores are not affected)."
        )
    return split_seed, warnings


def _kernel_sizes(parent: Run | None) -> tuple[int, int, int] | None:
    """The pretrain's kernel size per stage (what a scratch arm copies)."""
    if parent is None:
        return None
    params = parent.params or {}
    return tuple(int((params.get(s) or {}).get("kernel_size", 3)) for s in STAGES)
