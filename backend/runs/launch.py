"""Launching runs: validate everything first, commit the rows, then queue the tasks."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from backend import queue
from backend.datasets import service as datasets_service
from backend.errors import InvalidRequest, NotFound
from backend.runs import service as runs_service
from backend.runs.models import FINISHED, Run, RunGroup
from backend.runs.schemas import AugmentationStudyCreate, RunCreate
from jobspec.params import JOB_PARAMS

ENCODER_STAGES = {"stacked": ["ae01", "ae02", "ae03"], "single": ["ae01"]}


def validate_params(kind: str, params: dict) -> BaseModel:
    """The job's parameters, or InvalidRequest naming the first bad field."""
    try:
        return JOB_PARAMS[kind](**params)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(["params", *(str(part) for part in first["loc"])])
        raise InvalidRequest(field, first["msg"]) from err


def _stages_needed(kind: str, config: BaseModel) -> list[str]:
    if kind == "finetune" and config.encoder != "scratch":
        return ENCODER_STAGES[config.encoder]
    if kind == "tune" and config.stage != "ae01":
        return ["ae01", "ae02", "ae03"][: ["ae01", "ae02", "ae03"].index(config.stage)]
    return []


def check_parent(session: Session, kind: str, config: BaseModel, parent_id: int | None):
    """The pretrain run whose weights this run needs: it must exist and be able to provide them."""
    needed = _stages_needed(kind, config)
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


def launch(*, session: Session, run_in: RunCreate, group: RunGroup | None = None) -> list[Run]:
    """Validate, create the run(s), commit, enqueue. Nothing is queued if anything is wrong."""
    config = validate_params(run_in.kind, run_in.params)
    dataset_id = _dataset_id(session, run_in.dataset)
    parent = check_parent(session, run_in.kind, config, run_in.parent_run_id)
    if run_in.parallel > 1 and run_in.kind != "tune":
        raise InvalidRequest("parallel", "only tune runs share work across workers")
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
            params=config.model_dump(mode="json"),
            seed=getattr(config, "seed", 0),
            dataset_id=dataset_id,
            parent_run_id=parent.id if parent else None,
            group_id=group.id if group else None,
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
    session.commit()  # rows first: a worker may pick the task up at once
    for run in runs:
        _enqueue(session, run)
    return runs


def _enqueue(session: Session, run: Run) -> None:
    try:
        run.task_id = queue.enqueue(run.kind, run.id)
    except Exception as err:  # broker down: say so on the run instead of leaving it queued
        runs_service.finish_run(
            session=session,
            run_id=run.id,
            status="failed",
            error=f"could not reach the job queue: {err}",
        )
        session.commit()
        raise
    session.commit()


def cancel(*, session: Session, run_id: int) -> Run:
    """Cancel a queued or running run."""
    run = runs_service.request_cancel(session=session, run_id=run_id)
    session.commit()
    if run.status == "cancelled" and run.task_id:
        queue.revoke(run.task_id)
    return run


def requeue(*, session: Session, run_id: int) -> Run:
    """Run a failed or cancelled run again, under the same id."""
    run = runs_service.requeue(session=session, run_id=run_id)
    session.commit()
    _enqueue(session, run)
    return run


def clone(*, session: Session, run_id: int, edits: dict | None = None) -> Run:
    """A new run like an old one, with some parameters (or name, tags, parent) changed."""
    source = runs_service.get_run(session, run_id)
    edits = dict(edits or {})
    params = _merge(source.params, edits.pop("params", {}))
    request = RunCreate(
        kind=source.kind,
        dataset=edits.pop("dataset", None) or datasets_service.get(session, source.dataset_id).name,
        name=edits.pop("name", None) or f"{source.name} (clone)",
        tags=edits.pop("tags", source.tags),
        params=params,
        parent_run_id=edits.pop("parent_run_id", source.parent_run_id),
    )
    if edits:
        raise InvalidRequest(next(iter(edits)), "cannot be changed when cloning")
    return launch(session=session, run_in=request)[0]


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def launch_augmentation_study(*, session: Session, study_in: AugmentationStudyCreate) -> RunGroup:
    """Finetune with augmentation off and on, for each seed, as one group."""
    base = validate_params("finetune", {**study_in.params, "augment": False})
    params = base.model_dump(mode="json")
    name = study_in.name or "augmentation study"
    requests = [
        RunCreate(
            kind="finetune",
            dataset=study_in.dataset,
            name=f"{name}: augment {'on' if augment else 'off'}, seed {seed}",
            tags=[f"augment:{'on' if augment else 'off'}", f"seed:{seed}"],
            params={**params, "augment": augment, "seed": seed},
            parent_run_id=study_in.parent_run_id,
        )
        for seed in study_in.seeds
        for augment in (False, True)
    ]
    # Validate all before creating any, so a bad study queues nothing.
    _dataset_id(session, study_in.dataset)
    check_parent(session, "finetune", base, study_in.parent_run_id)
    group = RunGroup(
        kind="augmentation_study", name=name, params={"base": params, "seeds": study_in.seeds}
    )
    session.add(group)
    session.flush()
    for request in requests:
        launch(session=session, run_in=request, group=group)
    return group
