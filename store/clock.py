"""The one clock that decides: the database server's.

Every "how long ago" that decides something (giving a run up for dead, re-sending a lost
message, whether a worker is idle, an import's time budget) compares two times read from
this clock, never one machine's clock against another's: the web, the workers and the
database may sit on different machines whose clocks disagree by minutes.

PostgreSQL: `clock_timestamp()`, the server's time at the moment of the statement (not
`now()`, which is when the transaction began). SQLite: the embedded store lives on one
machine, whose clock all its processes share; SQLite's own `'now'` reads it (the process
clock offset that tests inject into `store.timeutil.utcnow` does not apply to it).

`store.timeutil.utcnow()` stays the process's own clock: for display and for stamps that
decide nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

_NOW = {
    "postgresql": text("SELECT clock_timestamp()"),
    "sqlite": text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"),
}


def now(session: Session) -> datetime:
    """The database server's time now, timezone-aware UTC (one round trip)."""
    dialect = session.get_bind().dialect.name
    value = session.scalar(_NOW[dialect])
    if isinstance(value, str):  # SQLite answers text, in UTC
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime), value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
