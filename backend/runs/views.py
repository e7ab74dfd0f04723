"""Read-side rows for the runs table: one query for the page, one for its summaries.

Each row carries what the list shows without another round trip: data set name, key
parameters, the best validation score and its epoch, test scores, lineage, duration, times
and live progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, TypeVarTuple

from sqlalchemy import Row, Select, case, func, or_, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from backend.runs import liveness
from jobspec import kinds
from jobspec.status import RunStatus
from store import clock
from store.datasets.models import DatasetRecord
from store.runs import service as runs_service
from store.runs.models import MetricSummary, Run, RunGroup
from store.runs.schemas import RunFilter
from store.timeutil import aware

Cols = TypeVarTuple("Cols")  # a sorted select() returns what it selected
SORTS = ("created", "duration", "best", "name", "priority")

# The columns a user may show or hide (the picker), in table order; the row's check box,
# id, name and status always show. Jinja and static/js/runs_list.js draw each by its key.
COLUMNS = (
    {"key": "kind", "label": "Kind", "default": True},
    {"key": "dataset", "label": "Data set", "default": True},
    {"key": "params", "label": "Key params", "default": True},
    {"key": "best", "label": "Best", "default": True},
    {"key": "test_accuracy", "label": "Test acc", "default": False},
    {"key": "balanced_accuracy", "label": "Balanced acc", "default": False},
    {"key": "tags", "label": "Tags", "default": True},
    {"key": "parent", "label": "Parent", "default": False},
    {"key": "group", "label": "Study / group", "default": False},
    {"key": "launched_by", "label": "Launched by", "default": False},
    {"key": "priority", "label": "Priority", "default": True},
    {"key": "duration", "label": "Duration", "default": True},
    {"key": "created", "label": "Created", "default": True},
    {"key": "finished", "label": "Finished", "default": True},
)


def table(
    session: Session,
    *,
    run_filter: RunFilter,
    sort: str = "created",
    order: str = "desc",
    limit: int = 50,
    offset: int = 0,
) -> dict:
    """One page of table rows, filtered and sorted, with the total count."""
    query = select(Run, DatasetRecord.name).join(DatasetRecord, DatasetRecord.id == Run.dataset_id)
    query = runs_service.filtered(query, run_filter)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    query = _sorted(session, query, sort, order)
    rows = session.execute(query.limit(limit).offset(offset)).all()
    return {"items": rows_of(session, rows), "total": total, "limit": limit, "offset": offset}


def ordered_ids(
    session: Session, *, run_filter: RunFilter, sort: str, order: str, limit: int
) -> list[int]:
    """Ids of the runs `run_filter` asks for, sorted as the table is (ids only: an export
    reads the rows themselves a batch at a time, with by_ids)."""
    query = select(Run.id).join(DatasetRecord, DatasetRecord.id == Run.dataset_id)
    query = _sorted(session, runs_service.filtered(query, run_filter), sort, order)
    return list(session.scalars(query.limit(limit)))


def by_ids(session: Session, ids: Sequence[int]) -> list[Row[Run, str]]:
    """(Run, data set name) of these runs, in the order of `ids` (runs gone are left out)."""
    query = select(Run, DatasetRecord.name).join(DatasetRecord, DatasetRecord.id == Run.dataset_id)
    found = {row[0].id: row for row in session.execute(query.where(Run.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def rows_of(session: Session, rows: Sequence[tuple[Run, str]]) -> list[dict]:
    """Table rows of (Run, data set name) pairs, with their summaries and lineage names."""
    summaries = _summaries(session, [run.id for run, _ in rows])
    links = _links(session, [run for run, _ in rows])
    now = clock.now(session)  # running durations: to now by the clock that stamped the start
    etas = liveness.etas(session, [run for run, _ in rows], now)  # the panel's figures
    return [
        row_of(run, name, summaries.get(run.id, {}), now, links, etas.get(run.id))
        for run, name in rows
    ]


def _links(session: Session, runs: list[Run]) -> dict:
    """Names of the parent runs and groups the rows point at."""
    parents = {run.parent_run_id for run in runs if run.parent_run_id}
    groups = {run.group_id for run in runs if run.group_id}
    names = select(Run.id, Run.name).where(Run.id.in_(parents))
    group_rows = select(RunGroup.id, RunGroup.name, RunGroup.kind).where(RunGroup.id.in_(groups))
    return {
        "runs": dict(session.execute(names).all()) if parents else {},
        "groups": {i: (n, k) for i, n, k in session.execute(group_rows)} if groups else {},
    }


def _sorted(session: Session, query: Select[*Cols], sort: str, order: str) -> Select[*Cols]:
    descending = order != "asc"
    if sort == "name":
        name = func.lower(Run.name)
        return query.order_by(name.desc() if descending else name.asc(), Run.id.desc())
    if sort == "duration":
        key = _duration_expr(session)
        return query.order_by(key.is_(None), key.desc() if descending else key.asc(), Run.id.desc())
    if sort == "best":
        return _by_best(query, descending)
    if sort == "priority":
        by = Run.priority.desc() if descending else Run.priority.asc()
        return query.order_by(by, Run.id.desc())
    created = Run.created_at
    return query.order_by(
        created.desc() if descending else created.asc(),
        Run.id.desc() if descending else Run.id.asc(),
    )


def _duration_expr(session: Session) -> ColumnElement[Any]:
    """Seconds from start to finish (or to now while running), in the database's dialect."""
    if session.get_bind().dialect.name == "sqlite":
        end = func.coalesce(func.julianday(Run.finished_at), func.julianday("now"))
        return (end - func.julianday(Run.started_at)) * 86400.0
    end = func.coalesce(Run.finished_at, func.now())
    return func.extract("epoch", end - Run.started_at)


def _rank_keys() -> list[kinds.RankKey]:
    """Every kind's ranking keys, in each kind's order of preference."""
    return [rank for name in kinds.names() for rank in kinds.get(name).ranking]


def _like(rank: kinds.RankKey) -> str:
    """A ranking key as a LIKE pattern ("trial-*/val_loss" -> "trial-%/val_loss")."""
    return rank.key.replace("%", r"\%").replace("_", r"\_").replace("*", "%")


def _by_best(query: Select[*Cols], descending: bool) -> Select[*Cols]:
    """Runs with a score first, grouped by what they are scored on: accuracy-like metrics
    before losses, then kind (the registry's order), then the kind's ranking metric (its
    order of preference); best first within a group (descending; ascending: worst first).
    A loss is never ranked against an accuracy, nor a pretrain that reached only ae01
    against ones scored on ae03."""
    ranks = [(name, rank) for name in kinds.names() for rank in kinds.get(name).ranking]
    ranks.sort(key=lambda pair: pair[1].metric.goal != "max")  # stable: keeps the rest
    groups: list[tuple[ColumnElement[bool], int]] = []
    scores: list[tuple[ColumnElement[bool], ColumnElement[float]]] = []
    for name, rank in ranks:
        query, value = _rank_value(query, rank)
        hit = (Run.kind == name) & value.is_not(None)
        groups.append((hit, len(groups)))
        scores.append((hit, -value if rank.metric.goal == "max" else value))  # low: good
    if not groups:
        return query.order_by(Run.id.desc())
    group, score = case(*groups, else_=None), case(*scores, else_=None)
    return query.order_by(
        group.is_(None), group, score.asc() if descending else score.desc(), Run.id.desc()
    )


def _rank_value(
    query: Select[*Cols], rank: kinds.RankKey
) -> tuple[Select[*Cols], ColumnElement[float]]:
    """The query joined to the value a run is ranked by on `rank`, and that value."""
    if rank.pattern:  # a tune: its best trial
        pick = func.min if rank.metric.goal == "min" else func.max
        sub = (
            select(MetricSummary.run_id, pick(MetricSummary.best_value).label("v"))
            .where(MetricSummary.key.like(_like(rank), escape="\\"))
            .group_by(MetricSummary.run_id)
            .subquery()
        )
        return query.outerjoin(sub, sub.c.run_id == Run.id), sub.c.v
    alias = aliased(MetricSummary)
    query = query.outerjoin(alias, (alias.run_id == Run.id) & (alias.key == rank.key))
    # The value at the kept epoch (early stopping's restored one), as the row shows it.
    return query, func.coalesce(alias.kept_value, alias.last_value)


def _summaries(session: Session, run_ids: list[int]) -> dict[int, dict[str, MetricSummary]]:
    """The summaries the rows show, for all runs of the page in one query."""
    if not run_ids:
        return {}
    ranks = _rank_keys()
    exact = [rank.key for rank in ranks if not rank.pattern]
    patterns = [MetricSummary.key.like(_like(r), escape="\\") for r in ranks if r.pattern]
    out: dict[int, dict[str, MetricSummary]] = {}
    rows = session.scalars(
        select(MetricSummary).where(
            MetricSummary.run_id.in_(run_ids), or_(MetricSummary.key.in_(exact), *patterns)
        )
    )
    for summary in rows:
        out.setdefault(summary.run_id, {})[summary.key] = summary
    return out


def row_of(
    run: Run,
    dataset_name: str,
    summaries: dict,
    now: datetime,
    links: dict | None = None,
    eta: liveness.Eta | None = None,
) -> dict:
    """A run as one table row (JSON-able); `links` names its parent and group, `eta` is a
    running run's (backend/runs/liveness.py: the same figure as the queue panel's)."""
    links = links or {}
    progress = progress_of(run) if run.status == RunStatus.RUNNING else None
    if progress is not None:
        found = eta or liveness.Eta(None, None)
        progress.update(found.fields())
    evaluation = (run.result or {}).get("evaluation") or {}
    group = links.get("groups", {}).get(run.group_id)
    parent_name = links.get("runs", {}).get(run.parent_run_id)
    return {
        "id": run.id,
        "kind": run.kind,
        "name": run.name,
        "status": run.status,
        "archived": bool(run.archived),
        "tags": list(run.tags or []),
        "dataset": dataset_name,
        "group_id": run.group_id,
        "group": {"id": run.group_id, "name": group[0], "kind": group[1]} if group else None,
        "study_name": run.study_name,
        "parent_run_id": run.parent_run_id,
        "parent_name": parent_name,
        "launched_by": run.launched_by,
        "key_params": key_params(run.kind, run.params or {}),
        "best": best_of(run, summaries),
        "test_accuracy": _number(evaluation.get("accuracy")),
        "balanced_accuracy": _number(evaluation.get("balanced_accuracy")),
        "progress": progress,
        "priority": run.priority,
        "set_aside_for": run.set_aside_for,
        "duration_seconds": duration_of(run, now),
        "created_at": aware(run.created_at).isoformat(),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "error": (run.error or "")[:200] or None,
    }


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
    return kinds.table_columns(kind, params)


def best_of(run: Run, summaries: dict[str, MetricSummary]) -> dict | None:
    """The score a run is judged by: {label, value, epoch, goal} or None yet. For a model
    that is kept (a finetune, a pretrain stage) it is the kept epoch's; for a tune, its
    best trial's."""
    if run.kind not in kinds.names():
        return None
    kind = kinds.get(run.kind)
    score = (run.result or {}).get(kind.result_score) if kind.result_score else None
    if score is not None and kind.ranking:  # the job's own verdict (a tune's best trial)
        rank = kind.ranking[0]
        return {"label": rank.label, "value": score, "epoch": None, "goal": rank.metric.goal}
    for rank in kind.ranking:
        if rank.pattern:
            found = [s for key, s in summaries.items() if fnmatchcase(key, rank.key)]
            if found:
                pick = min if rank.metric.goal == "min" else max
                s = pick(found, key=lambda s: s.best_value)
                return {**_score(rank, s), "trial": s.key.split("/")[0]}
        elif rank.key in summaries:
            return _score(rank, summaries[rank.key])
    return None


def _score(rank: kinds.RankKey, summary: MetricSummary) -> dict:
    """The value at the epoch whose model the run keeps (early stopping's restored epoch,
    else the last), not the best of any epoch."""
    kept = summary.kept_step is not None
    return {
        "label": rank.label,
        "value": summary.kept_value if kept else summary.last_value,
        "epoch": summary.kept_step if kept else summary.last_step,
        "goal": rank.metric.goal,
    }


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
