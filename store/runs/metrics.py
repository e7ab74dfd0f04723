"""Metrics as rows (run, key, step, value, wall time) plus a latest/best summary per key.

Every row is one epoch of one stage. A series sampled in time (the worker's memory, CPU,
GPU) is a run sample (store.runs.samples) and is refused here, so nothing that reads epochs
can take seconds for epochs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from sqlalchemy import Insert, delete, select
from sqlalchemy.orm import Session

from jobspec import kinds
from jobspec.metrics import SAMPLED_PANEL, goal_of, metric, split_key
from jobspec.stages import TRIAL_STAGE
from store.runs import best  # noqa: F401 (its events keep runs.best_* with the summaries)
from store.runs.models import Metric, MetricSummary, Run, TuneTrial

__all__ = ["goal_of"]  # read by the compare page and test factories from here

Point = tuple[int, float]  # (step, value)
Series = dict[str, list[Point]]  # {key: points in step order}


class MetricRow(TypedDict):
    """One metrics row as inserted."""

    run_id: int
    key: str
    step: int
    value: float
    wall_time: float


class SummaryView(TypedDict):
    """A key's summary as the pages read it."""

    last_value: float
    last_step: int
    best_value: float
    best_step: int
    kept_value: float | None
    kept_step: int | None
    goal: str


def log_epoch(
    *,
    session: Session,
    run_id: int,
    stage: str,
    step: int,
    values: dict[str, float],
    wall_time: float | None = None,
) -> None:
    """One epoch's metrics of a stage, keys stored as "<stage>/<name>"; ValueError for a
    sampled series (see check_epoch)."""
    check_epoch(stage, values)
    wall_time = wall_time or time.time()
    rows: list[MetricRow] = [
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
    fresh = [row for row in rows if row["key"] in stored]
    if fresh:
        _update_summaries(session, run_id, stage, step, fresh, keep_rule(session, run_id))


def check_epoch(stage: str | None, names: Iterable[str]) -> None:
    """Refuse what is not an epoch: the sampled series' stage or a sampled metric's name
    (they go to store.runs.samples, against seconds)."""
    sampled = [name for name in names if metric(name).sampled]
    if not stage or stage == SAMPLED_PANEL or sampled:
        what = f"{stage}/{', '.join(sampled)}" if sampled else repr(stage)
        raise ValueError(f"{what} is not an epoch metric: samples go to store.runs.samples")


def is_epoch_stage(kind: str, params: Mapping[str, Any] | None, stage: str | None) -> bool:
    """Whether `stage` is one the run's kind trains epoch by epoch: in its plan (the plan's
    "trial" covers a tune's trial-0, trial-1, ...). Never the sampled series' stage; a run
    whose plan is unknown (an unregistered kind, params stored under older rules) may have
    any other."""
    if not stage or stage == SAMPLED_PANEL:
        return False
    plan = kinds.get(kind).stage_plan(params or {}) if kind in kinds.names() else {}
    base, _, number = stage.rpartition("-")
    trial = base == TRIAL_STAGE and TRIAL_STAGE in plan and number.isdigit()
    return not plan or stage in plan or trial


def keep_rule(session: Session, run_id: int) -> kinds.Keep | None:
    """Which epoch a run keeps (its kind's rule on its params); None: the last."""
    run = session.get(Run, run_id)
    if run is None or run.kind not in kinds.names():
        return None
    return kinds.get(run.kind).kept_epoch_rule(run.params or {})


def _insert_new(session: Session, rows: list[MetricRow]) -> Insert:
    """INSERT that skips rows whose (run, key, step) exists: the schema forbids duplicates."""
    unique = ["run_id", "key", "step"]
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(Metric).values(rows).on_conflict_do_nothing(index_elements=unique)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(Metric).values(rows).on_conflict_do_nothing(index_elements=unique)


def rebuild_summaries(session: Session, run_id: int) -> None:
    """Recompute a run's latest/best/kept summaries from its metric rows (after rows were
    dropped), replaying the epochs in order under the run's keep rule."""
    session.execute(delete(MetricSummary).where(MetricSummary.run_id == run_id))
    query = select(Metric.key, Metric.step, Metric.value).where(Metric.run_id == run_id)
    rows = session.execute(query.order_by(Metric.step, Metric.key)).all()
    session.add_all(summaries_of(run_id, rows, keep_rule(session, run_id)))
    session.flush()


def summaries_of(
    run_id: int, rows: Iterable[tuple[str, int, float]], rule: kinds.Keep | None
) -> list[MetricSummary]:
    """The summaries of (key, step, value) rows ordered by step, replayed epoch by epoch."""
    out: dict[str, MetricSummary] = {}
    epochs: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for key, step, value in rows:
        stage, name = split_key(key)
        epochs[(stage or "", step)][name] = value
    for (stage, step), values in sorted(epochs.items(), key=lambda item: item[0][1]):
        kept = True
        if rule is not None and rule.stage == stage:
            monitor = out.get(f"{stage}/{rule.monitor}")
            monitored = values.get(rule.monitor)
            kept_before = monitor.kept_value if monitor else None
            kept = monitored is not None and rule.improves(monitored, kept_before)
        for name, value in values.items():
            key = f"{stage}/{name}" if stage else name
            summary = out.get(key)
            if summary is None:
                out[key] = summary = MetricSummary(
                    run_id=run_id,
                    key=key,
                    last_value=value,
                    last_step=step,
                    best_value=value,
                    best_step=step,
                    goal=goal_of(key),
                )
            _fold(summary, value, step, kept)
    return list(out.values())


def _fold(summary: MetricSummary, value: float, step: int, kept: bool) -> None:
    """One epoch's value into a summary: latest, best, and kept when this epoch is kept."""
    summary.last_value, summary.last_step = value, step
    better = value < summary.best_value if summary.goal == "min" else value > summary.best_value
    if better:
        summary.best_value, summary.best_step = value, step
    if kept:
        summary.kept_value, summary.kept_step = value, step


def _update_summaries(
    session: Session,
    run_id: int,
    stage: str,
    step: int,
    rows: list[MetricRow],
    rule: kinds.Keep | None,
) -> None:
    """Fold one epoch of a stage into its keys' summaries: latest, best, and kept (this
    epoch replaces the kept one when the rule says its monitor improved, or always when
    the stage keeps its last epoch)."""
    kept = True
    if rule is not None and rule.stage == stage:
        by_name = {split_key(row["key"])[1]: row["value"] for row in rows}
        monitor = session.get(MetricSummary, (run_id, f"{stage}/{rule.monitor}"))
        value = by_name.get(rule.monitor)
        kept = value is not None and rule.improves(value, monitor.kept_value if monitor else None)
    for row in rows:
        _update_summary(session, row, kept)


def _update_summary(session: Session, row: MetricRow, kept: bool) -> None:
    summary = session.get(MetricSummary, (row["run_id"], row["key"]))
    if summary is None:
        summary = MetricSummary(
            run_id=row["run_id"],
            key=row["key"],
            last_value=row["value"],
            last_step=row["step"],
            best_value=row["value"],
            best_step=row["step"],
            goal=goal_of(row["key"]),
        )
        session.add(summary)
    _fold(summary, row["value"], row["step"], kept)
    session.flush()  # the next epoch's rule reads the monitor's row


def series(session: Session, run_id: int, keys: list[str] | None = None) -> Series:
    """{key: [(step, value), ...]} in step order."""
    query = select(Metric.key, Metric.step, Metric.value).where(Metric.run_id == run_id)
    if keys:
        query = query.where(Metric.key.in_(keys))
    out: dict[str, list[Point]] = defaultdict(list)
    for key, step, value in session.execute(query.order_by(Metric.key, Metric.step)):
        out[key].append((step, value))
    return dict(out)


def series_many(session: Session, run_ids: list[int]) -> dict[int, Series]:
    """series() of several runs in one query: {run_id: {key: [(step, value), ...]}}."""
    return {run_id: series for run_id, (series, _) in timed_series_many(session, run_ids).items()}


def timed_series_many(
    session: Session, run_ids: list[int]
) -> dict[int, tuple[Series, dict[str, list[float | None]]]]:
    """Per run, in one query: {key: [(step, value), ...]} in step order and, point for
    point, the seconds from the run's first epoch metric to each (the worker's clock: for a
    wall-time axis only, never to decide anything)."""
    query = (
        select(Metric.run_id, Metric.key, Metric.step, Metric.value, Metric.wall_time)
        .where(Metric.run_id.in_(run_ids))
        .order_by(Metric.run_id, Metric.key, Metric.step)
    )
    rows = session.execute(query).all()
    origin: dict[int, float] = {}
    for row in rows:
        if row.wall_time is not None:
            origin[row.run_id] = min(origin.get(row.run_id, row.wall_time), row.wall_time)
    series: dict[int, dict[str, list[Point]]] = {run_id: defaultdict(list) for run_id in run_ids}
    wall: dict[int, dict[str, list[float | None]]] = {
        run_id: defaultdict(list) for run_id in run_ids
    }
    for run_id, key, step, value, wall_time in rows:
        series[run_id][key].append((step, value))
        seconds = None if wall_time is None else round(wall_time - origin[run_id], 1)
        wall[run_id][key].append(seconds)
    return {run_id: (dict(series[run_id]), dict(wall[run_id])) for run_id in run_ids}


def summaries(session: Session, run_id: int) -> dict[str, SummaryView]:
    """{key: {last_value, last_step, best_value, best_step, goal}}."""
    rows = session.scalars(select(MetricSummary).where(MetricSummary.run_id == run_id))
    return {
        s.key: {
            "last_value": s.last_value,
            "last_step": s.last_step,
            "best_value": s.best_value,
            "best_step": s.best_step,
            "kept_value": s.kept_value,
            "kept_step": s.kept_step,
            "goal": s.goal,
        }
        for s in rows
    }


def record_trial(*, session: Session, run_id: int, trial: Mapping[str, Any]) -> None:
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
