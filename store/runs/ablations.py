"""Launching an ablation study: a factor's two arms for each seed, as one group, checked
whole before anything is created (the factors themselves: jobspec/ablations.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobspec import ablations, kinds
from jobspec.stages import STAGES
from store import queue
from store.base import JSONObject
from store.datasets import service as datasets_service
from store.errors import InvalidRequest, NotFound
from store.runs import leaks, limits
from store.runs import service as runs_service
from store.runs.launch import (
    _Plan,
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
from store.runs.seeds import MAX_SEED
from store.settings import Settings, get_settings


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
    # By the test set's counts, where the study's scores are computed (jobspec.ablations).
    counts = (dataset.train_counts or {}, dataset.test_counts or {})
    metric = study_in.metric or ablations.default_metric(*counts)
    if metric not in ablations.STUDY_METRICS:
        known = ", ".join(ablations.STUDY_METRICS)
        raise InvalidRequest("metric", f"{metric!r} is not a study metric (known: {known})")
    parent = _study_parent(session, factor, study_in)
    base = validate_params(ablations.RUN_KIND, study_in.params).model_dump(mode="json")
    split_seed, warnings = _study_split(study_in, parent, base, dataset.n_train)
    warnings = [*dataset_warnings(session, parent, dataset), *warnings]
    base["split_seed"] = split_seed
    context = ablations.Context(parent_kernel_sizes=_kernel_sizes(parent))
    name = study_in.name or f"{factor.label.lower()} study"
    shared = factor.shared(base, metric)  # early stopping on the study's metric, both arms
    plans = _plans(
        session,
        Arms(factor, shared, context, parent, study_in.dataset, name, study_in.priority),
        study_in.seeds,
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
            "base": shared,
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


@dataclass(frozen=True)
class Arms:
    """What every run of a study shares: its factor, shared parameters (split seed among
    them), the pretrain its encoders come from, data set, name and priority."""

    factor: ablations.Factor
    shared: JSONObject
    context: ablations.Context
    parent: Run | None
    dataset: str
    name: str
    priority: int


def _plans(session: Session, arms: Arms, seeds: list[int]) -> list[_Plan]:
    """Each seed's two runs, checked (InvalidRequest before anything is created)."""
    plans = []
    for seed in seeds:
        for arm in arms.factor.arms:
            params = {**arms.factor.params(arms.shared, arm.name, arms.context), "seed": seed}
            config = validate_params(ablations.RUN_KIND, params)
            needs_parent = bool(kinds.parent_stages(ablations.RUN_KIND, config))
            plans.append(
                check_request(
                    session,
                    RunCreate(
                        kind=ablations.RUN_KIND,
                        dataset=arms.dataset,
                        name=f"{arms.name}: {arm.label}, seed {seed}",
                        tags=[f"factor:{arms.factor.name}", f"arm:{arm.name}", f"seed:{seed}"],
                        params=params,
                        parent_run_id=arms.parent.id if arms.parent and needs_parent else None,
                        priority=arms.priority,
                    ),
                )
            )
    return plans


def study_seeds(group: RunGroup, runs: list[Run]) -> list[int]:
    """The seeds a study planned (its runs' seeds where it kept none), in order."""
    planned = [int(s) for s in (group.params or {}).get("seeds") or []]
    return planned or sorted({run_seed(run) for run in runs})


def run_seed(run: Run) -> int:
    """The seed the study gave a run."""
    return int((run.params or {}).get("seed", run.seed))


def next_seeds(group: RunGroup, runs: list[Run], add: int) -> list[int]:
    """The add seeds after the highest one the study has used."""
    used = {*study_seeds(group, runs), *(run_seed(run) for run in runs)}
    start = max(used) + 1 if used else 0
    return list(range(start, start + add))


def seeds_room(settings: Settings, group: RunGroup, runs: list[Run]) -> int:
    """How many seeds the study may still take (STACKLAB_MAX_SEEDS less those it has)."""
    return max(0, settings.max_seeds - len(study_seeds(group, runs)))


def cannot_add_seeds(group: RunGroup, runs: list[Run]) -> str | None:
    """Why a study cannot take more seeds (None: it can), whatever the count."""
    if group.kind != ablations.GROUP_KIND:
        return (
            "an augmentation study made before ablations kept no shared parameters to repeat: "
            "launch a new study instead"
        )
    if not runs:
        return "the study has no runs left to repeat"
    if all(run.archived for run in runs):
        return "the study is archived: unarchive its runs to add seeds"
    return None


def add_seeds(
    *, session: Session, group_id: int, add: int, launched_by: str | None = None
) -> list[Run]:
    """Both arms of `add` new seeds for a study, after its highest seed: the same shared
    parameters, split, pretrain, data set and priority as its first runs; all or none."""
    settings = get_settings()
    # Locked (PostgreSQL) until the commit: two clicks at once must not both take the seeds
    # after the same highest one.
    group = session.get(RunGroup, group_id, with_for_update=True)
    if group is None or group.kind not in ablations.GROUP_KINDS:
        raise NotFound("ablation study", group_id)
    runs = list(session.scalars(select(Run).where(Run.group_id == group.id).order_by(Run.id)))
    why = cannot_add_seeds(group, runs)
    if why is not None:
        raise InvalidRequest("add", why)
    planned = study_seeds(group, runs)
    room = seeds_room(settings, group, runs)
    if add > room:
        what = f"the study has {len(planned)} seeds and {add} more would make {len(planned) + add}"
        raise limits.over("add", what, settings.max_seeds, "max_seeds")
    seeds = next_seeds(group, runs, add)
    if seeds[-1] > MAX_SEED:
        raise InvalidRequest("add", f"a seed is at most {MAX_SEED:,}")
    params = group.params or {}
    factor = ablations.factor(params["factor"])
    parent = _stored_parent(session, params.get("parent_run_id"))
    limits.check_count(settings, session, runs=2 * add, field="add", launched_by=launched_by)
    arms = Arms(
        factor,
        dict(params.get("base") or {}),
        ablations.Context(parent_kernel_sizes=_kernel_sizes(parent)),
        parent,
        datasets_service.get(session, runs[0].dataset_id).name,
        group.name,
        runs[0].priority,
    )
    plans = _plans(session, arms, seeds)
    epochs = sum(plan.epochs for plan in plans)
    limits.check_epochs(settings, session, epochs=epochs, field="add", launched_by=launched_by)
    queue.check()
    group.params = {**params, "seeds": [*planned, *seeds]}  # a new dict: JSON is saved whole
    new = [run for plan in plans for run in create_rows(session, plan, group, launched_by)]
    session.commit()  # the seeds and their runs at once
    send_runs(session, new)
    return new


def _stored_parent(session: Session, parent_id: int | None) -> Run | None:
    """The pretrain a study recorded, still there (InvalidRequest when it is gone)."""
    if parent_id is None:
        return None
    parent = session.get(Run, parent_id)
    if parent is None:
        raise InvalidRequest("add", f"the study's pretrain run #{parent_id} no longer exists")
    return parent


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
    study_in: AblationCreate, parent: Run | None, base: JSONObject, n_train: int
) -> tuple[int | None, list[str]]:
    """The split seed every seed shares (None: each seed its own) and what to warn about:
    a split drawn otherwise than the pretrain's (seed, fraction or quick-run sample) puts
    some of its training images in the study's validation (store/runs/leaks.py)."""
    warnings: list[str] = []
    split_seed: int | None = None
    if study_in.split_seed == "per_seed":
        warnings.append(
            "Each seed has its own train/validation split: seeds differ in split as well as "
            "in initialisation."
        )
    elif study_in.split_seed is not None:
        split_seed = study_in.split_seed
    else:
        split_seed = leaks.draw_of(parent.params or {}, n_train).seed if parent else 0
    if parent is not None:
        leak = leaks.launch_warning(
            parent=parent, params=base, split_seed=split_seed, n_train=n_train
        )
        warnings += [leak] if leak else []
    return split_seed, warnings


def _kernel_sizes(parent: Run | None) -> tuple[int, int, int] | None:
    """The pretrain's kernel size per stage (what a scratch arm copies)."""
    if parent is None:
        return None
    params = parent.params or {}
    ae01, ae02, ae03 = (int((params.get(s) or {}).get("kernel_size", 3)) for s in STAGES)
    return ae01, ae02, ae03
