"""The ablation studies an experiment holds, each as its question, verdict and rule, and
the multiple-comparison note over them (Holm).

Read through backend.groups.ablation's `study` (any factor, and the older augmentation
studies as the augmentation factor): the one line to change if that contract moves.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.compare import stats
from backend.groups import ablation
from jobspec.verdicts import Verdict
from store.errors import NotFound
from store.runs.models import RunGroup

study_answer = ablation.study  # (*, session, group_id, effect=None) -> dict


def summary(*, session: Session, group: RunGroup) -> dict:
    """One study's line in a report: what it asked, its verdict, the rule behind it."""
    base = {
        "group": {"id": group.id, "name": group.name, "kind": group.kind},
        "url": f"/groups/{group.id}",
    }
    if not ablation.is_study(group):
        return {**base, "study": False}
    try:
        data = study_answer(session=session, group_id=group.id)
    except (NotFound, KeyError, ValueError, OSError) as err:  # a study it cannot judge yet
        return {**base, "study": True, "problem": str(err)}
    return {
        **base,
        "study": True,
        "factor": data.get("factor"),
        "metric": data.get("metric"),
        "verdict": data.get("verdict"),
        "rule": data.get("rule"),
        "registration": data.get("registration"),
        "p": _p_value(data),
        "running": bool(data.get("running")),
        "runs": len(data.get("runs") or []),
    }


ALPHA = 0.05  # the family-wise error rate Holm's note is stated at


def _p_value(data: dict) -> float | None:
    """The study's paired t-test p on its pre-registered metric (the test its interval
    inverts), when the interval was read; None otherwise (too few, at chance)."""
    outcome = (data.get("verdict") or {}).get("outcome")
    t_test = (data.get("difference") or {}).get("t_test")
    if outcome not in Verdict.judged() or not t_test:
        return None
    return float(t_test["p"])


def multiplicity(summaries: list[dict]) -> dict:
    """Holm's adjustment over the experiment's judged studies (one pre-registered metric
    each): every summary with a p gets "p_holm" and "survives" (helped / hurt still at a
    family-wise α of 0.05); the note says how many were compared and how many survive."""
    judged = [s for s in summaries if s.get("p") is not None]
    for summary, adjusted in zip(judged, stats.holm([s["p"] for s in judged]), strict=True):
        outcome = summary["verdict"]["outcome"]
        summary["p_holm"] = adjusted
        summary["survives"] = outcome in Verdict.answers() and adjusted < ALPHA
    answers = [s for s in judged if s["verdict"]["outcome"] in Verdict.answers()]
    kept = sum(bool(s["survives"]) for s in answers)
    if not judged:
        text = "No study has an interval yet: nothing to correct for."
    else:
        text = (
            f"{len(judged)} {'study' if len(judged) == 1 else 'studies'} of this experiment "
            f"judged, each on its one pre-registered metric. Holm's step-down adjustment of "
            f"their paired t-test p values keeps the chance of any false 'helped' or 'hurt' "
            f"among them at most {ALPHA:g}: {kept} of {len(answers)} "
            f"{'answer' if len(answers) == 1 else 'answers'} survive. Differences on the other "
            "metrics are exploratory and are not in this count."
        )
    return {
        "method": "holm",
        "alpha": ALPHA,
        "compared": len(judged),
        "survive": kept,
        "text": text,
    }
