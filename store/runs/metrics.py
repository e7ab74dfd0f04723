"""Metrics as rows (run, key, step, value, wall time) plus a latest/best summary per key."""

from __future__ import annotations

import time
from collections import defaultdict

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from jobspec.metrics import goal_of
from store.runs.models import Metric, MetricSummary, TuneTrial

__all__ = ["goal_of"]  # read by the compare page and test factories from here


def log_epoch(
    *,
    session: Session,
    run_id: int,
    stage: str,
    step: int,
    values: dict[str, float],
    wall_time: float | None = None,
) -> None:
    """One epoch's metrics of a stage, keys stored as "<stage>/<name>"."""
    wall_time = wall_time or time.time()
    rows = [
        {
            "run_id": run_id,
            "key": f"{stage}/{name}",
            "step": step,
            "value": float(value),
            "wall_time": wall_time,
        }
        for name, value in values.items()
    ]
    if not rows:
        return
    # A step already stored (a duplicate delivery) changes nothing, its summary included.
    stored = set(session.scalars(_insert_new(session, rows).returning(Metric.key)))
    for row in rows:
        if row["key"] in stored:
            _update_summary(session, row)


def _insert_new(session: Session, rows: list[dict]):
    """INSERT that skips rows whose (run, key, step) exists: the schema forbids duplicates."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return (
        dialect_insert(Metric)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["run_id", "key", "step"])
    )


def rebuild_summaries(session: Session, run_id: int) -> None:
    """Recompute a run's latest/best summaries from its metric rows (after rows were dropped)."""
    session.execute(delete(MetricSummary).where(MetricSummary.run_id == run_id))
    session.flush()
    query = select(Metric.key, Metric.step, Metric.value).where(Metric.run_id == run_id)
    for key, step, value in session.execute(query.order_by(Metric.key, Metric.step)).all():
        _update_summary(session, {"run_id": run_id, "key": key, "step": step, "value": value})
        session.flush()


def _update_summary(session: Session, row: dict) -> None:
    summary = session.get(MetricSummary, (row["run_id"], row["key"]))
    value, step = row["value"], row["step"]
    if summary is None:
        session.add(
            MetricSummary(
                run_id=row["run_id"],
                key=row["key"],
                last_value=value,
                last_step=step,
                best_value=value,
                best_step=step,
                goal=goal_of(row["key"]),
            )
        )
        return
    summary.last_value, summary.last_step = value, step
    better = value < summary.best_value if summary.goal == "min" else value > summary.best_value
    if better:
        summary.best_value, summary.best_step = value, step


def series(session: Session, run_id: int, keys: list[str] | None = None) -> dict[str, list]:
    """{key: [(step, value), ...]} in step order."""
    query = select(Metric.key, Metric.step, Metric.value).where(Metric.run_id == run_id)
    if keys:
        query = query.where(Metric.key.in_(keys))
    out: dict[str, list] = defaultdict(list)
    for key, step, value in session.execute(query.order_by(Metric.key, Metric.step)):
        out[key].append((step, value))
    return dict(out)


def series_many(session: Session, run_ids: list[int]) -> dict[int, dict[str, list]]:
    """series() of several runs in one query: {run_id: {key: [(step, value), ...]}}."""
    out: dict[int, dict[str, list]] = {run_id: defaultdict(list) for run_id in run_ids}
    query = (
        select(Metric.run_id, Metric.key, Metric.step, Metric.value)
        .where(Metric.run_id.in_(run_ids))
        .order_by(Metric.run_id, Metric.key, Metric.step)
    )
    for run_id, key, step, value in session.execute(query):
        out[run_id][key].append((step, value))
    return {run_id: dict(keys) for run_id, keys in out.items()}


def summaries(session: Session, run_id: int) -> dict[str, dict]:
    """{key: {last_value, last_step, best_value, best_step, goal}}."""
    rows = session.scalars(select(MetricSummary).where(MetricSummary.run_id == run_id))
    return {
        s.key: {
            "last_value": s.last_value,
            "last_step": s.last_step,
            "best_value": s.best_value,
            "best_step": s.best_step,
            "goal": s.goal,
        }
        for s in rows
    }


def record_trial(*, session: Session, run_id: int, trial: dict) -> None:
    """One finished Optuna trial of a tune run."""
    session.merge(
        TuneTrial(
            run_id=run_id,
            number=trial["number"],
            params=trial["params"],
            state=trial["state"],
            value=trial["value"],
            intermediate={str(k): v for k, v in trial["intermediate"].items()},
            seconds=trial["seconds"],
        )
    )


def trials_of(session: Session, run_ids: list[int]) -> list[TuneTrial]:
    """Trials of some tune runs, by number."""
    return list(
        session.scalars(
            select(TuneTrial).where(TuneTrial.run_id.in_(run_ids)).order_by(TuneTrial.number)
        )
    )
