"""Time helpers: always timezone-aware UTC.

`utcnow()` is this process's clock: for display and for stamps that decide nothing. What
decides (give-up, re-send, idle workers, import budgets) reads the database's clock,
`store.clock.now(session)`. `STACKLAB_TEST_CLOCK_OFFSET_SECONDS` shifts this process's
clock, so tests can run two processes whose clocks disagree; it is for tests only.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import overload

OFFSET_VARIABLE = "STACKLAB_TEST_CLOCK_OFFSET_SECONDS"


def utcnow() -> datetime:
    """Now, by this process's clock, in UTC, with its time zone."""
    now = datetime.now(UTC)
    offset = os.environ.get(OFFSET_VARIABLE)
    return now + timedelta(seconds=float(offset)) if offset else now


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
@overload
def aware(moment: datetime | None) -> datetime | None: ...
def aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; read them as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
