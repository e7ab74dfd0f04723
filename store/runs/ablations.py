"""Launching an ablation study: a factor's two arms for each seed, as one group, checked
whole before anything is created (the factors themselves: jobspec/ablations.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from jobspec import ablations, kinds
from jobspec.stages import STAGES
from store import queue
from store.base import JSONObject
from store.errors import InvalidRequest, NotFound
from store.runs import limits
from store.runs import service as runs_service
from store.runs.launch import (
    check_request,
    create_rows,
    dataset_by_name,
    dataset_warnings,
    not_a_parent,
    send_runs,
    validate_params,
)
from store.runs.models import Run, RunGroup
from store.runs.schemas import AblationCreate, AugmentationStudyCreate, RunCreate
from store.settings import get_settings


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
    limits.check_priority(settings, study_in.priority, launched_by)
    limits.check_count(
        settings, session, runs=2 * len(study_in.seeds), field="seeds", launched_by=launched_by
    )
    dataset = dataset_by_name(session, study_in.dataset)
    metric = study_in.metric or ablations.default_metric(dataset.train_counts or {})
    if metric not in ablations.STUDY_METRICS:
        known = ", ".join(ablations.STUDY_METRICS)
        raise InvalidRequest("metric", f"{metric!r} is not a study metric (known: {known})")
    parent = _study_parent(session, factor, study_in)
    base = validate_params(ablations.RUN_KIND, study_in.params).model_dump(mode="json")
    split_seed, warnings = _study_split(study_in, parent, base)
    warnings = [*dataset_warnings(session, parent, dataset), *warnings]
    base["split_seed"] = split_seed
    context = ablations.Context(parent_kernel_sizes=_kernel_sizes(parent))
    name = study_in.name or f"{factor.label.lower()} study"
    plans = []
    for seed in study_in.seeds:
        for arm in factor.arms:
            params = {**factor.params(base, arm.name, context), "seed": seed}
            config = validate_params(ablations.RUN_KIND, params)
            needs_parent = bool(kinds.parent_stages(ablations.RUN_KIND, config))
            plans.append(
                check_request(
                    session,
                    RunCreate(
                        kind=ablations.RUN_KIND,
                        dataset=study_in.dataset,
                        name=f"{name}: {arm.label}, seed {seed}",
                        tags=[f"factor:{factor.name}", f"arm:{arm.name}", f"seed:{seed}"],
                        params=params,
                        parent_run_id=parent.id if parent and needs_parent else None,
                        priority=study_in.priority,
                    ),
                )
            )
    epochs = sum(plan.epochs for plan in plans)  # seeds x arms x each run's plan
    limits.check_epochs(settings, session, epochs=epochs, field="seeds", launched_by=launched_by)
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
    runs = [run for plan in plans for run in create_rows(session, plan, group, launched_by)]
    session.commit()  # the group and every run at once
    send_runs(session, runs)
    return group


def _study_parent(
    session: Session, factor: ablations.Factor, study_in: AblationCreate
) -> Run | None:
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
    if not kinds.features(parent.kind).experiment_root:
        raise InvalidRequest("parent_run_id", not_a_parent(parent))
    return parent


def _study_split(
    study_in: AblationCreate, parent: Run | None, base: JSONObject
) -> tuple[int | None, list[str]]:
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
    ae01, ae02, ae03 = (int((params.get(s) or {}).get("kernel_size", 3)) for s in STAGES)
    return ae01, ae02, ae03
