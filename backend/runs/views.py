"""Read-side rows for the runs table: one query for the page, one for its summaries.

Each row carries what the list shows without another round trip: data set name, key
parameters, the best validation score and its epoch, duration and live progress.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Float, String, cast, func, or_, select
from sqlalchemy.orm import Session, aliased

from store.datasets.models import DatasetRecord
from store.runs.models import MetricSummary, Run
from store.timeutil import aware, utcnow

PRETRAIN_STAGES = ("ae03", "ae02", "ae01")  # the last trained stage's val_loss counts
SUMMARY_KEYS = ("finetune/val_accuracy", "finetune/val_loss") + tuple(
    f"{s}/val_loss" for s in PRETRAIN_STAGES
)
TRIAL_LOSS = "trial-%/val_loss"
SORTS = ("created", "duration", "best", "name")


def table(
    session: Session,
    *,
    kind: str | None = None,
    status: str | None = None,
    tag: str | None = None,
    dataset: str | None = None,
    q: str | None = None,
    sort: str = "created",
    order: str = "desc",
    limit: int = 50,
    offset: int = 0,
) -> dict:
    """One page of table rows, filtered and sorted, with the total count."""
    query = select(Run, DatasetRecord.name).join(DatasetRecord, DatasetRecord.id == Run.dataset_id)
    if kind:
        query = query.where(Run.kind == kind)
    if status:
        query = query.where(Run.status == status)
    if dataset:
        query = query.where(DatasetRecord.name == dataset)
    if q:
        query = query.where(func.lower(Run.name).contains(q.lower(), autoescape=True))
    if tag:
        # Tags are a JSON list; its text holds each tag JSON-quoted on every backend.
        query = query.where(cast(Run.tags, String).contains(json.dumps(tag), autoescape=True))
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    query = _sorted(session, query, sort, order)
    rows = session.execute(query.limit(limit).offset(offset)).all()
    summaries = _summaries(session, [run.id for run, _ in rows])
    now = utcnow()
    items = [row_of(run, name, summaries.get(run.id, {}), now) for run, name in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _sorted(session: Session, query, sort: str, order: str):
    descending = order != "asc"
    if sort == "name":
        key = func.lower(Run.name)
        return query.order_by(key.desc() if descending else key.asc(), Run.id.desc())
    if sort == "duration":
        key = _duration_expr(session)
        return query.order_by(key.is_(None), key.desc() if descending else key.asc(), Run.id.desc())
    if sort == "best":
        return _by_best(query, descending)
    key = Run.created_at
    return query.order_by(
        key.desc() if descending else key.asc(), Run.id.desc() if descending else Run.id.asc()
    )


def _duration_expr(session: Session):
    """Seconds from start to finish (or to now while running), in the database's dialect."""
    if session.get_bind().dialect.name == "sqlite":
        end = func.coalesce(func.julianday(Run.finished_at), func.julianday("now"))
        return (end - func.julianday(Run.started_at)) * 86400.0
    end = func.coalesce(Run.finished_at, func.now())
    return func.extract("epoch", end - Run.started_at)


def _by_best(query, descending: bool):
    """Classifiers by best val accuracy, then autoencoders and tunes by best val loss."""
    acc = aliased(MetricSummary)
    query = query.outerjoin(acc, (acc.run_id == Run.id) & (acc.key == "finetune/val_accuracy"))
    losses = []
    for stage in PRETRAIN_STAGES:
        alias = aliased(MetricSummary)
        query = query.outerjoin(
            alias, (alias.run_id == Run.id) & (alias.key == f"{stage}/val_loss")
        )
        losses.append(alias.best_value)
    trials = (
        select(MetricSummary.run_id, func.min(MetricSummary.best_value).label("loss"))
        .where(MetricSummary.key.like(TRIAL_LOSS))
        .group_by(MetricSummary.run_id)
        .subquery()
    )
    query = query.outerjoin(trials, trials.c.run_id == Run.id)
    loss = cast(func.coalesce(*losses, trials.c.loss), Float)
    return query.order_by(
        acc.best_value.is_(None),
        acc.best_value.desc() if descending else acc.best_value.asc(),
        loss.is_(None),
        loss.asc() if descending else loss.desc(),
        Run.id.desc(),
    )


def _summaries(session: Session, run_ids: list[int]) -> dict[int, dict[str, MetricSummary]]:
    """The summaries the rows show, for all runs of the page in one query."""
    if not run_ids:
        return {}
    out: dict[int, dict[str, MetricSummary]] = {}
    rows = session.scalars(
        select(MetricSummary).where(
            MetricSummary.run_id.in_(run_ids),
            or_(MetricSummary.key.in_(SUMMARY_KEYS), MetricSummary.key.like(TRIAL_LOSS)),
        )
    )
    for summary in rows:
        out.setdefault(summary.run_id, {})[summary.key] = summary
    return out


def row_of(run: Run, dataset_name: str, summaries: dict, now: datetime) -> dict:
    """A run as one table row (JSON-able)."""
    return {
        "id": run.id,
        "kind": run.kind,
        "name": run.name,
        "status": run.status,
        "tags": list(run.tags or []),
        "dataset": dataset_name,
        "group_id": run.group_id,
        "parent_run_id": run.parent_run_id,
        "key_params": key_params(run.kind, run.params or {}),
        "best": best_of(run, summaries),
        "progress": progress_of(run) if run.status == "running" else None,
        "duration_seconds": duration_of(run, now),
        "created_at": aware(run.created_at).isoformat(),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "error": (run.error or "")[:200] or None,
    }


def _iso(moment: datetime | None) -> str | None:
    return aware(moment).isoformat() if moment else None


def duration_of(run: Run, now: datetime) -> float | None:
    """Seconds the run ran (so far, while running)."""
    if run.started_at is None:
        return None
    end = aware(run.finished_at) or now
    return max(0.0, (end - aware(run.started_at)).total_seconds())


def key_params(kind: str, params: dict) -> list[list[str]]:
    """The few parameters that tell runs apart in a list, as [label, value] pairs."""
    if kind == "pretrain":
        stages = [params.get(s, {}) for s in ("ae01", "ae02", "ae03")]
        optimizers = {s.get("optimizer") for s in stages}
        return [
            ["kernels", "/".join(str(s.get("kernel_size", "?")) for s in stages)],
            [
                "optimizer",
                "/".join(s.get("optimizer", "?") for s in stages)
                if len(optimizers) > 1
                else str(optimizers.pop()),
            ],
            ["epochs", "/".join(str(s.get("epochs", "?")) for s in stages)],
        ]
    if kind == "finetune":
        pairs = [
            ["encoder", str(params.get("encoder", "?"))],
            ["augment", "on" if params.get("augment") else "off"],
        ]
        if params.get("freeze_encoder"):
            pairs.append(["encoder", "frozen"])
        if params.get("encoder") == "scratch":
            pairs.append(["kernel", str(params.get("kernel_size", "?"))])
        return pairs
    if kind == "tune":
        return [
            ["stage", str(params.get("stage", "?"))],
            ["trials", str(params.get("n_trials", "?"))],
            ["kernels", ",".join(str(k) for k in params.get("kernel_sizes", []))],
        ]
    return []


def best_of(run: Run, summaries: dict) -> dict | None:
    """The score a run is judged by: {label, value, epoch, goal} or None yet."""
    if run.kind == "finetune":
        for key, label in (("finetune/val_accuracy", "val acc"), ("finetune/val_loss", "val loss")):
            if key in summaries:
                s = summaries[key]
                return {"label": label, "value": s.best_value, "epoch": s.best_step, "goal": s.goal}
        return None
    if run.kind == "pretrain":
        for stage in PRETRAIN_STAGES:
            s = summaries.get(f"{stage}/val_loss")
            if s is not None:
                label = f"{stage} val loss"
                return {"label": label, "value": s.best_value, "epoch": s.best_step, "goal": "min"}
        return None
    trials = [s for key, s in summaries.items() if key.startswith("trial-")]
    if run.result.get("best_value") is not None:
        return {
            "label": "best val loss",
            "value": run.result["best_value"],
            "epoch": None,
            "goal": "min",
        }
    if trials:
        best = min(trials, key=lambda s: s.best_value)
        return {
            "label": "best val loss",
            "value": best.best_value,
            "epoch": best.best_step,
            "goal": "min",
            "trial": best.key.split("/")[0],
        }
    return None


def progress_of(run: Run) -> dict:
    """Live progress with the overall fraction done (0..1) across stages."""
    p = dict(run.progress or {})
    if not p:
        return {"fraction": 0.0}
    epochs, steps = max(int(p.get("epochs") or 1), 1), max(int(p.get("steps") or 1), 1)
    within = ((int(p.get("epoch") or 1) - 1) + int(p.get("step") or 0) / steps) / epochs
    count = max(int(p.get("stage_count") or 1), 1)
    index = int(p.get("stage_index") or 1)
    p["fraction"] = max(0.0, min(1.0, ((index - 1) + within) / count))
    return p
