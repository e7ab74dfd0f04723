"""A run's time series (the worker's memory, CPU, GPU): readings at seconds, never epochs.

Rows (run, attempt, key, t, value, wall time), t = seconds since that attempt's job
started; a reading already stored is kept (a re-sent write changes nothing). They are read
back as one timeline per key: each attempt is placed at its start (run_attempts, the
database's clock) after the first attempt that sampled, so a resumed run's chart runs on.
Epoch metrics live in store.runs.metrics; nothing here is ever an epoch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Insert, select
from sqlalchemy.orm import Session

from store.runs.models import RunAttempt, RunSample

# One sampling moment of an attempt: (t seconds, the worker's wall time, {key: value}).
Reading = tuple[float, float, dict[str, float]]
Row4 = tuple[int, str, float, float]  # attempt, key, t, value
# Rows per INSERT: a flush after a long outage holds thousands, and SQLite takes at most
# 32,766 bound values a statement (6 a row).
ROWS_PER_INSERT = 1000


@dataclass
class Series:
    """One key's readings in time order: seconds since the run's first sampled attempt
    started, the values, and the attempt each reading comes from."""

    seconds: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)


def record(*, session: Session, run_id: int, attempt: int, readings: list[Reading]) -> None:
    """Store one attempt's readings in one statement (the caller fences the attempt)."""
    rows = [
        {
            "run_id": run_id,
            "attempt": attempt,
            "key": key,
            "t": float(t),
            "value": float(value),
            "wall_time": wall_time or time.time(),
        }
        for t, wall_time, values in readings
        for key, value in values.items()
    ]
    for start in range(0, len(rows), ROWS_PER_INSERT):
        session.execute(_insert_new(session, rows[start : start + ROWS_PER_INSERT]))


def _insert_new(session: Session, rows: list[dict[str, object]]) -> Insert:
    """INSERT that skips a (run, attempt, key, t) already stored."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(RunSample).values(rows).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(RunSample).values(rows).on_conflict_do_nothing()


def series(session: Session, run_id: int) -> dict[str, Series]:
    """{key: Series} of a run, attempts laid end to end on one time axis."""
    query = (
        select(RunSample.attempt, RunSample.key, RunSample.t, RunSample.value)
        .where(RunSample.run_id == run_id)
        .order_by(RunSample.attempt, RunSample.key, RunSample.t)
    )
    rows: list[Row4] = [(a, key, t, value) for a, key, t, value in session.execute(query)]
    offsets = _offsets(session, run_id, rows)
    out: dict[str, Series] = defaultdict(Series)
    for attempt, key, t, value in rows:
        found = out[key]
        found.seconds.append(round(offsets[attempt] + t, 3))
        found.values.append(value)
        found.attempts.append(attempt)
    return dict(out)


def _offsets(session: Session, run_id: int, rows: Sequence[Row4]) -> dict[int, float]:
    """Attempt -> seconds from the first sampled attempt's start to its own; never before
    the previous attempt's last reading (two clocks: the database's and the worker's)."""
    last: dict[int, float] = {}
    for attempt, _, t, _ in rows:
        last[attempt] = max(last.get(attempt, 0.0), t)
    query = select(RunAttempt.number, RunAttempt.started_at).where(RunAttempt.run_id == run_id)
    started: dict[int, datetime] = {number: at for number, at in session.execute(query)}
    offsets: dict[int, float] = {}
    first: datetime | None = None
    floor = 0.0
    for attempt in sorted(last):
        begun = started.get(attempt)
        if first is None:
            first = begun
        gap = (begun - first).total_seconds() if begun and first else floor
        offsets[attempt] = max(gap, floor)
        floor = offsets[attempt] + last[attempt]
    return offsets
