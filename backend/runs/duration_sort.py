"""The runs table sorted by duration, a page at a time.

A run's duration (views' `_duration_expr`) is finish minus start, or now minus start while
it has not finished, and none before it starts. The order's keys are (no duration, the
duration, id), both directions alike; a page merges two walks, each one page long:
finished runs on an index over the very expression finish minus start (migration 0016;
`finished_expr`), and the runs started and not finished (the few running now) by their
start; then the runs never started by id. So a page costs one page, not every run.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    DateTime,
    Numeric,
    Row,
    Select,
    and_,
    func,
    literal,
    literal_column,
    null,
    or_,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from store import clock
from store.errors import InvalidRequest
from store.runs.models import Run


def finished_expr(dialect: str) -> ColumnElement[Any]:
    """Seconds from start to finish, as the index over it is written (store/runs/models.py:
    the query must use this very expression)."""
    if dialect == "sqlite":  # a literal, not a parameter: SQLite matches the index's text
        days = func.julianday(Run.finished_at) - func.julianday(Run.started_at)
        return days * literal_column("86400.0")
    return func.extract("epoch", Run.finished_at - Run.started_at)


def running_expr(dialect: str, now: datetime) -> ColumnElement[Any]:
    """Seconds from start to `now`, as views' `_duration_expr` counts a running run's."""
    moment = literal(now, DateTime(timezone=True))
    if dialect == "sqlite":
        return (func.julianday(moment) - func.julianday(Run.started_at)) * 86400.0
    return func.extract("epoch", moment - Run.started_at)


def page(
    session: Session,
    base: Select[*tuple[Any, ...]],
    descending: bool,
    limit: int,
    position: dict | None,
) -> list[Row[Any]]:
    """`limit` rows of `base` by duration after `position` (a cursor's [no duration,
    duration, id, moment]); each row ends with those keys (k0..k3)."""
    dialect = session.get_bind().dialect.name
    last = (position or {}).get("v") or []
    # The pages of one cursor count running runs to the first page's moment, so a running
    # run's place holds while its duration grows (it would be met again on a later page).
    now = last[3] if len(last) == 4 and isinstance(last[3], datetime) else clock.now(session)
    rows: list[Row[Any]] = []
    if not last or last[0] == 0:
        after = (last[1], last[2]) if last else None
        exact = dialect == "postgresql"
        unfinished = and_(Run.finished_at.is_(None), Run.started_at.is_not(None))
        walks = [
            _walk(
                base, finished_expr(dialect), Run.finished_at.is_not(None), descending, after, exact
            ),
            _walk(base, running_expr(dialect, now), unfinished, descending, after, exact),
        ]
        found = [
            row
            for walk in walks
            for row in session.execute(
                walk.add_columns(literal(now, DateTime(timezone=True)).label("k3")).limit(limit)
            ).all()
        ]
        found.sort(key=lambda row: (row.k1, row.k2), reverse=descending)
        rows = found[:limit]
        if len(rows) >= limit:
            return rows
        last = []
    query = base.where(Run.started_at.is_(None)).add_columns(
        literal(1).label("k0"),
        null().label("k1"),
        Run.id.label("k2"),
        literal(now, DateTime(timezone=True)).label("k3"),
    )
    if last:
        query = query.where(Run.id < last[2] if descending else Run.id > last[2])
    by_id = Run.id.desc() if descending else Run.id.asc()
    return rows + list(session.execute(query.order_by(by_id).limit(limit - len(rows))).all())


def _walk(
    base: Select[*tuple[Any, ...]],
    seconds: ColumnElement[Any],
    which: ColumnElement[bool],
    descending: bool,
    after: tuple[Any, Any] | None,
    exact: bool,
) -> Select[*tuple[Any, ...]]:
    """The runs `which` picks by `seconds` after `after` (its index's walk where it has one)."""
    query = base.where(which, seconds.is_not(None)).add_columns(
        literal(0).label("k0"), seconds.label("k1"), Run.id.label("k2")
    )
    if after is not None:
        value, run_id = after
        if value is None or not isinstance(run_id, int):
            raise InvalidRequest("cursor", "not a cursor this table made")
        bound: Any = value
        if exact:  # PostgreSQL's seconds are numeric: compared as numeric, on its index
            bound = literal(Decimal(repr(float(value))), Numeric())
        past = seconds < bound if descending else seconds > bound
        start = seconds <= bound if descending else seconds >= bound
        tie = and_(seconds == bound, Run.id < run_id if descending else Run.id > run_id)
        query = query.where(start, or_(past, tie))
    order = [seconds.desc(), Run.id.desc()] if descending else [seconds.asc(), Run.id.asc()]
    return query.order_by(*order)
