"""An ablation study's answer: did the factor help, by how much, how sure are we.

A study is a group of finetunes: per seed, one run per arm of one factor (jobspec.ablations),
every other setting shared. Old augmentation studies (kind "augmentation_study", tags
"augment:on|off") read as the augmentation factor judged by test accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.compare import stats
from backend.groups import figures, judgement, steps
from backend.runs import liveness
from jobspec import ablations
from jobspec.status import RunStatus
from store.datasets import service as datasets_service
from store.errors import NotFound
from store.runs import ablations as ablation_launcher
from store.runs import leaks
from store.runs import metrics as metrics_service
from store.runs.models import Run, RunGroup

STUDY_KINDS = ablations.GROUP_KINDS
LEGACY_KIND = ablations.LEGACY_GROUP_KIND
# (stored key, title, in percent)
CURVES = (
    ("finetune/val_accuracy", "val_accuracy", True),
    ("finetune/val_balanced_accuracy", "val_balanced_accuracy", True),
    ("finetune/val_loss", "val_loss", False),
)
OPTIONAL_CURVES = {"finetune/val_balanced_accuracy"}


@dataclass(frozen=True)
class Design:
    """What a group studies: the factor, its arms and the metric the verdict is about."""

    factor: ablations.Factor
    metric: str
    metric_chosen: bool
    legacy: bool

    @property
    def roles(self) -> dict[str, str]:
        return {self.factor.baseline.name: "baseline", self.factor.treatment.name: "treatment"}


def get_group(session: Session, group_id: int) -> RunGroup:
    """A run group by id, or NotFound."""
    group = session.get(RunGroup, group_id)
    if group is None:
        raise NotFound("group", group_id)
    return group


def group_runs(session: Session, group_id: int) -> list[Run]:
    """The group's runs by id."""
    return list(session.scalars(select(Run).where(Run.group_id == group_id).order_by(Run.id)))


def is_study(group: RunGroup) -> bool:
    """Whether the group is an ablation study (new or old kind)."""
    return group.kind in STUDY_KINDS


def design_of(group: RunGroup) -> Design:
    """The study's factor and metric (an old augmentation study: augmentation, accuracy)."""
    params = group.params or {}
    if group.kind == LEGACY_KIND:
        return Design(ablations.factor("augmentation"), "accuracy", True, True)
    factor = ablations.factor(params.get("factor", "augmentation"))
    metric = params.get("metric")
    metric = metric if metric in ablations.STUDY_METRICS else "accuracy"
    return Design(factor, metric, bool(params.get("metric_chosen")), False)


def arm_of(run: Run, design: Design) -> str | None:
    """The arm the run belongs to, from its tag (old studies: augment:on|off or its param)."""
    for tag in run.tags or []:
        if tag.startswith("arm:") and not design.legacy:
            return tag.split(":", 1)[1]
        if design.legacy and tag in ("augment:on", "augment:off"):
            return tag.split(":")[1]
    if design.legacy:
        return "on" if (run.params or {}).get("augment") else "off"
    return None


def study(*, session: Session, group_id: int, effect: float | None = None) -> dict:
    """The study's verdict, statistics, arms, curves and runs (JSON-ready)."""
    group = get_group(session, group_id)
    if not is_study(group):
        raise NotFound("ablation study", group_id)
    design = design_of(group)
    runs = group_runs(session, group_id)
    dataset = datasets_service.get(session, runs[0].dataset_id) if runs else None
    counts = dict((dataset.train_counts if dataset else None) or {})
    arms = {run.id: arm_of(run, design) for run in runs}
    pairs = _pairs(runs, arms, design, counts)
    planned = ablation_launcher.study_seeds(group, runs)
    judged = judgement.judge(
        session=session,
        factor=design.factor,
        metric=design.metric,
        legacy=design.legacy,
        dataset=dataset,
        pairs=pairs,
        planned=planned,
        effect=effect,
        scores={
            arm.name: _arm_scores(arm.name, runs, arms, design, counts)
            for arm in design.factor.arms
        },
        per_seed_split=(group.params or {}).get("split_seed") is None,
    )
    running = any(run.status.is_active for run in runs)
    setting = _setting(session, group, design, dataset, counts)
    setting["warnings"] += leaks.study_warnings(runs, (group.params or {}).get("parent_run_id"))
    return {
        "group": {"id": group.id, "name": group.name, "kind": group.kind},
        **setting,
        **judged,
        "pairs": pairs,
        "arms": [_arm_summary(arm, design, runs, arms, counts) for arm in design.factor.arms],
        "curves": _curves(session, runs, arms, design),
        "runs": _run_rows(session, runs, arms, design, counts),
        "running": running,
        "counts": {s: sum(r.status == s for r in runs) for s in sorted({r.status for r in runs})},
        "seeds": planned,
        "next": steps.next_step(
            group=group,
            runs=runs,
            diff=judged["difference"],
            outcome=judged["verdict"]["outcome"],
        ),
    }


def _arm_scores(arm: str, runs: list[Run], arms: dict, design: Design, counts: dict) -> list:
    """One arm's finished scores on the study metric, in points."""
    return [
        value
        for run in runs
        if arms[run.id] == arm and (evaluation := _evaluation(run)) is not None
        if (value := _points(design.metric, evaluation, counts)) is not None
    ]


def _setting(session, group: RunGroup, design: Design, dataset, counts: dict) -> dict:
    """What the study is: factor, metric and why, data set, split, parent, warnings."""
    params = group.params or {}
    test_counts = dict((dataset.test_counts if dataset else None) or {})
    factor = design.factor
    parent_id = params.get("parent_run_id")
    parent = session.get(Run, parent_id) if parent_id is not None else None
    split = params.get("split_seed") if "split_seed" in params else "unknown"
    return {
        "factor": {
            "name": factor.name,
            "label": factor.label,
            "question": factor.question,
            "subject": factor.subject,
            "note": factor.note,
        },
        "metric": {
            "name": design.metric,
            "label": ablations.STUDY_METRICS[design.metric],
            "chosen": design.metric_chosen,
            "why": _why_metric(design, counts, test_counts),
        },
        # Fixed at launch with the study (its shared params): what early stopping watched.
        "stopping": ablations.stopping_rule(design.metric, params.get("base") or {}),
        "metrics": [{"name": k, "label": v} for k, v in ablations.STUDY_METRICS.items()],
        "dataset": {
            "name": dataset.name if dataset else None,
            "imbalanced": ablations.imbalanced(counts),
            "rarest_classes": ablations.rarest_classes(counts) if counts else [],
            "rarest_rule": ablations.RAREST_RULE,
            "train_counts": counts,
        },
        "split_seed": "per_seed" if split is None else split,
        "parent": (
            {"id": parent.id, "name": parent.name, "status": parent.status}
            if parent is not None
            else None
        ),
        "warnings": [*(params.get("warnings") or []), *_stopping_warning(design, params)],
    }


def _stopping_warning(design: Design, params: dict) -> list[str]:
    """The stopping rule's confound, when early stopping watched other than the metric."""
    if design.legacy:
        return []
    confound = ablations.stopping_rule(design.metric, params.get("base") or {})["confound"]
    return [confound] if confound else []


def _why_metric(design: Design, counts: dict, test_counts: dict) -> str:
    if design.legacy:
        return "augmentation studies made before ablations are judged by test accuracy"
    same = design.metric == "balanced_accuracy" and ablations.same_as_accuracy(test_counts)
    equal = " (on this balanced test set it equals accuracy)" if same else ""
    if design.metric_chosen:
        return f"chosen when the study was launched{equal}"
    if test_counts and ablations.default_metric(counts, test_counts) == design.metric:
        balance = "imbalanced" if ablations.imbalanced(test_counts) else "balanced"
        return f"picked automatically: the test classes are {balance}"
    if ablations.imbalanced(counts):  # studies launched when the training counts decided
        return "picked automatically: the training classes are imbalanced"
    return "picked automatically: the training classes are balanced"


def _evaluation(run: Run) -> dict | None:
    evaluation = (run.result or {}).get("evaluation") or {}
    if run.status != RunStatus.SUCCEEDED or "accuracy" not in evaluation:
        return None
    return evaluation


def _points(metric: str, evaluation: dict, counts: dict) -> float | None:
    value = ablations.metric_value(metric, evaluation, counts)
    return None if value is None else value * 100


def _pairs(runs: list[Run], arms: dict, design: Design, counts: dict) -> list[dict]:
    """Seeds where both arms finished with the metric, in seed order; values in percent."""
    by_seed: dict[int, dict] = {}
    for run in runs:
        evaluation = _evaluation(run)
        value = _points(design.metric, evaluation, counts) if evaluation else None
        role = design.roles.get(arms[run.id])
        if value is not None and role is not None:
            by_seed.setdefault(ablation_launcher.run_seed(run), {})[role] = {
                "id": run.id,
                "value": value,
            }
    return [
        {
            "seed": seed,
            **sides,
            "difference": sides["treatment"]["value"] - sides["baseline"]["value"],
        }
        for seed, sides in sorted(by_seed.items())
        if len(sides) == 2
    ]


def _arm_summary(arm, design: Design, runs: list[Run], arms: dict, counts: dict) -> dict:
    mine = [run for run in runs if arms[run.id] == arm.name]
    evaluations = [e for e in map(_evaluation, mine) if e is not None]

    def spread(metric: str) -> dict:
        values = [_points(metric, e, counts) for e in evaluations]
        return stats.mean_sd([v for v in values if v is not None])

    def recall(name: str) -> dict:
        values = [(e.get("per_class") or {}).get(name, {}).get("recall") for e in evaluations]
        return stats.mean_sd([v * 100 for v in values if v is not None])

    rare = ablations.rarest_classes(counts) if counts else []
    return {
        "name": arm.name,
        "label": arm.label,
        "role": design.roles[arm.name],
        "runs": len(mine),
        "finished": len(evaluations),
        "metrics": {metric: spread(metric) for metric in ablations.STUDY_METRICS},
        "rare_recall": [{"class": name, **recall(name)} for name in rare],
    }


def _curves(session: Session, runs: list[Run], arms: dict, design: Design) -> list[dict]:
    series = metrics_service.series_many(session, [run.id for run in runs]) if runs else {}
    out = []
    for key, title, percent in CURVES:
        if key in OPTIONAL_CURVES and not any(key in s for s in series.values()):
            continue
        lines = [
            {
                "label": arm.label,
                "role": design.roles[arm.name],
                "points": figures.band(
                    [series[r.id].get(key, []) for r in runs if arms[r.id] == arm.name]
                ),
            }
            for arm in design.factor.arms
        ]
        label = f"{title} (%)" if percent else title
        out.append({"metric": title, "figure": figures.bands(label, lines, percent=percent)})
    return out


def _run_rows(
    session: Session, runs: list[Run], arms: dict, design: Design, counts: dict
) -> list[dict]:
    """The study's runs, each running one with the one ETA and its worker's liveness (what
    the run page, the runs table and the queue panel show)."""
    live = liveness.live(session, runs)
    return [_run_row(run, arms[run.id], design, counts, live.get(run.id)) for run in runs]


def _run_row(
    run: Run, arm: str | None, design: Design, counts: dict, live: dict | None = None
) -> dict:
    evaluation = _evaluation(run) or {}
    label = design.factor.arm(arm).label if arm in design.roles else arm
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "arm": arm,
        "arm_label": label,
        "seed": ablation_launcher.run_seed(run),
        "value": _points(design.metric, evaluation, counts) if evaluation else None,
        "accuracy": evaluation.get("accuracy"),
        "balanced_accuracy": evaluation.get("balanced_accuracy"),
        "progress": live if live is not None else (run.progress or {}),
        "url": f"/runs/{run.id}",
    }
