"""The one clock that decides: the database server's.

Every "how long ago" that decides something (giving a run up for dead, re-sending a lost
message, whether a worker is idle, an import's time budget, "evaluate now" taken for lost)
compares two times read from this clock, never one machine's clock against another's: the
web, the workers and the database may sit on different machines whose clocks disagree by
minutes. So the stamps those decisions read (heartbeat_at, queued_at, sent_at, started_at,
a worker's last_seen, an import's heartbeat) are written with `now(session)` too.

PostgreSQL: `clock_timestamp()`, the server's time at the moment of the statement (not
`now()`, which is when the transaction began). SQLite: the embedded store lives on one
machine, whose clock all its processes share; SQLite's own `'now'` reads it (the process
clock offset that tests inject into `store.timeutil.utcnow` does not apply to it).

`store.timeutil.utcnow()` stays the process's own clock: for display and for stamps that
decide nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement


def column(session: Session) -> ColumnElement[Any]:
    """The database's time now as a SQL expression, to read along with another query
    (`at(value)` turns what it returns into a datetime)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M:%f", "now")  # text, in UTC
    return func.clock_timestamp()


def at(value: object) -> datetime:
    """What `column()` returned, as a timezone-aware UTC datetime."""
    if isinstance(value, str):  # SQLite answers text, in UTC
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a time from the database: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def now(session: Session) -> datetime:
    """The database server's time now, timezone-aware UTC (one round trip)."""
    return at(session.scalar(select(column(session))))
