"""The ablation studies an experiment holds, each as its question, verdict and rule.

Read through backend.groups.ablation's `study` (any factor, and the older augmentation
studies as the augmentation factor): the one line to change if that contract moves.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.groups import ablation
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
        "running": bool(data.get("running")),
        "runs": len(data.get("runs") or []),
    }
