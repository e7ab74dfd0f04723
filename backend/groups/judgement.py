"""A study's judgement from its seed pairs: the verdict on the pre-registered metric, the
chance guard, the seed interval (resolution floor, exact power), the test-set bootstrap
beside it, what the verdict covers, and the per-image tests kept apart from it.

`backend.groups.ablation.study` gathers the runs and pairs and calls `judge` once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from backend.compare import stats
from backend.groups import chance, evidence, verdict
from jobspec import ablations, verdicts
from jobspec.verdicts import Verdict


def judge(
    *,
    session: Session,
    factor: ablations.Factor,
    metric: str,
    legacy: bool,
    dataset,
    pairs: list[dict],
    planned: Sequence[int],
    scores: Mapping[str, list[float]],
    effect: float | None = None,
    per_seed_split: bool = False,
) -> dict:
    """Everything the study page says about the factor (JSON-ready; `pairs` lose their
    arrays and gain their McNemar tests)."""
    counts = dict((dataset.train_counts if dataset else None) or {})
    test_counts = dict((dataset.test_counts if dataset else None) or {})
    y_true = evidence.per_seed(session, pairs, dataset.id) if dataset is not None else None
    diffs = [pair["difference"] for pair in pairs]
    step = chance.resolution(metric, test_counts, counts) if test_counts else None
    diff = stats.paired_difference(diffs, effect, resolution=step)
    guard = guard_of(factor, metric, scores, counts, test_counts)
    test_set = evidence.test_set(pairs, y_true, metric=metric, diff=diff, dataset=dataset)
    name = dataset.name if dataset else "this data set"
    answer = _answer(factor, metric, name, diff, list(planned), guard)
    outcome = answer["verdict"]["outcome"]
    guard["applies"] = outcome == Verdict.CHANCE  # the page reads this
    covered = verdict.scope(diff, test_set, per_seed_split=per_seed_split)
    if outcome in Verdict.judged():
        answer["verdict"]["text"] += f" {covered}"
    return {
        **answer,
        "chance": guard,
        "difference": diff,
        "test_set": test_set,
        "scope": covered,
        "pooled": evidence.pooled(pairs, diffs, metric),
        "mcnemar_caveat": evidence.MCNEMAR_CAVEAT,
        "registration": registration(metric, legacy),
        "verdicts": verdicts.vocabulary(),
    }


def registration(metric: str, legacy: bool) -> dict:
    """The study metric as fixed before any result: stored with the study at launch (or,
    for studies made before ablations, fixed by rule); the others are exploratory."""
    how = (
        "fixed by rule for studies made before ablations"
        if legacy
        else "pre-registered: stored with the study when it was launched, before any result"
    )
    return {
        "metric": metric,
        "pre_registered": True,
        "how": how,
        "exploratory": [name for name in ablations.STUDY_METRICS if name != metric],
        "note": (
            "Only the pre-registered metric is judged; the other metrics are exploratory: "
            "no verdict, no interval, and a difference among them may be chance (several "
            "metrics looked at)."
        ),
    }


def guard_of(
    factor: ablations.Factor,
    metric: str,
    scores: Mapping[str, list[float]],
    counts: dict,
    test_counts: dict,
) -> dict:
    """Each arm's best finished score against the chance bar of the test set (chance.py)."""
    limit = chance.bar(metric, test_counts, counts) if test_counts else None
    per_arm = {}
    for arm in factor.arms:
        found = list(scores.get(arm.name, []))
        per_arm[arm.name] = {
            "label": arm.label,
            "best": max(found) if found else None,
            "at_chance": chance.at_chance(found, limit),
        }
    return {
        "limit": limit,
        "arms": per_arm,
        "both": all(a["at_chance"] for a in per_arm.values()),
        "rule": chance.rule(),
    }


def _answer(
    factor: ablations.Factor, metric: str, dataset: str, diff: dict, planned: list, guard: dict
) -> dict:
    """The verdict sentence and the rule that decides it; at chance, no effect size (the
    power figures of `diff` are emptied too)."""
    labels = (factor.baseline.label, factor.treatment.label)
    label = ablations.STUDY_METRICS[metric]
    rule = verdict.rule(metric=label, arms=labels)
    judged = diff["n"] >= 2
    if judged and guard["both"]:
        diff.update(mde=None, effect=None, effect_asked=False, effect_from=None)
        diff.update(seeds_needed=None, seeds_range=None)
        diff["power_at_effect"] = None
        best = tuple(guard["arms"][arm.name]["best"] for arm in factor.arms)
        sentence = verdict.at_chance(
            subject=factor.subject,
            arms=labels,
            metric=label,
            best=(best[0], best[1]),
            limit=guard["limit"],
            seeds=diff["n"],
        )
        return {"verdict": sentence, "rule": rule}
    sentence = verdict.sentence(
        subject=factor.subject,
        arms=labels,
        metric=label,
        dataset=dataset,
        diff=diff,
        pairs=diff["n"],
        seeds=len(planned),
    )
    note = verdict.two_seeds(diff, _t_crit(diff["n"]))
    lone = [a for a in guard["arms"].values() if a["at_chance"]]
    if judged and lone:
        note += " " + verdict.one_arm_at_chance(
            arm=lone[0]["label"], metric=label, best=lone[0]["best"], limit=guard["limit"]
        )
    if note.strip():
        sentence["text"] = f"{sentence['text']} {note.strip()}"
    return {"verdict": sentence, "rule": rule}


def _t_crit(n: int) -> float:
    from scipy import stats as scipy_stats

    return float(scipy_stats.t.ppf(0.975, max(n - 1, 1)))
