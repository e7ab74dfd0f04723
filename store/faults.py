"""What went wrong with the store, honestly: one vocabulary for a store error's cause.

A store error is either worth waiting out (the database is unreachable, restarting, locked
or busy: `transient`) or a fault nobody's retry loop fixes soon (a full disk, a read-only
file system, an exhausted quota, a permission taken away, a damaged file). Everyone who
meets a store error asks `classify(err)`: the worker's retry loops (through
`store.db.is_transient`), the web's error answers and `/api/ready`.

Read from SQLite's result code (Python 3.11 sets `sqlite_errorcode` on its exceptions; the
message is the fallback), PostgreSQL's SQLSTATE (psycopg's `sqlstate`) and an OSError's
errno, each possibly wrapped by SQLAlchemy (`.orig`) or chained (`__cause__`).
"""

from __future__ import annotations

import errno
import sqlite3
from enum import StrEnum


class StoreFault(StrEnum):
    """Why the store refused; `transient` faults are retried, the others are reported."""

    UNREACHABLE = "unreachable"
    LOCKED = "locked"
    DISK_FULL = "disk_full"
    QUOTA = "quota"
    READ_ONLY = "read_only"
    PERMISSION = "permission"
    CANNOT_OPEN = "cannot_open"
    IO_ERROR = "io_error"
    CORRUPT = "corrupt"

    @property
    def transient(self) -> bool:
        """Worth retrying with backoff: it clears by itself in seconds to minutes."""
        return self in (StoreFault.UNREACHABLE, StoreFault.LOCKED)

    @property
    def cannot_write(self) -> bool:
        """The store answers but cannot keep what it is given."""
        return not self.transient

    @property
    def reason(self) -> str:
        """The cause in words, for a run's error, a log line and an HTTP answer."""
        return REASONS[self]

    @property
    def http_status(self) -> int:
        """507 Insufficient Storage when space ran out, else 503 Service Unavailable."""
        return 507 if self in (StoreFault.DISK_FULL, StoreFault.QUOTA) else 503


REASONS = {
    StoreFault.UNREACHABLE: "the database is not answering",
    StoreFault.LOCKED: "the database is busy (a lock or a slow query did not clear in time)",
    StoreFault.DISK_FULL: "the store's disk is full",
    StoreFault.QUOTA: "the store is over its disk quota",
    StoreFault.READ_ONLY: "the store is read-only",
    StoreFault.PERMISSION: "the store refuses this process permission to write",
    StoreFault.CANNOT_OPEN: "the store's database file cannot be opened (a missing folder, "
    "its permissions or a full disk)",
    StoreFault.IO_ERROR: "the store's disk failed a read or write (an I/O error)",
    StoreFault.CORRUPT: "the store's database file is damaged",
}

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_CODES = {
    sqlite3.SQLITE_FULL: StoreFault.DISK_FULL,
    sqlite3.SQLITE_READONLY: StoreFault.READ_ONLY,
    sqlite3.SQLITE_PERM: StoreFault.PERMISSION,
    sqlite3.SQLITE_AUTH: StoreFault.PERMISSION,
    sqlite3.SQLITE_CANTOPEN: StoreFault.CANNOT_OPEN,
    sqlite3.SQLITE_IOERR: StoreFault.IO_ERROR,
    sqlite3.SQLITE_CORRUPT: StoreFault.CORRUPT,
    sqlite3.SQLITE_NOTADB: StoreFault.CORRUPT,
    sqlite3.SQLITE_BUSY: StoreFault.LOCKED,
    sqlite3.SQLITE_LOCKED: StoreFault.LOCKED,
}
# What SQLite says for each, for a driver that does not set the code.
_SQLITE_MESSAGES = {
    "database or disk is full": StoreFault.DISK_FULL,
    "readonly database": StoreFault.READ_ONLY,
    "access permission denied": StoreFault.PERMISSION,
    "not authorized": StoreFault.PERMISSION,
    "unable to open database file": StoreFault.CANNOT_OPEN,
    "disk i/o error": StoreFault.IO_ERROR,
    "database disk image is malformed": StoreFault.CORRUPT,
    "file is not a database": StoreFault.CORRUPT,
    "database is locked": StoreFault.LOCKED,
    "database table is locked": StoreFault.LOCKED,
}
# PostgreSQL SQLSTATEs; a class (first two characters) where the whole class means one thing.
_PG_STATES = {
    "53100": StoreFault.DISK_FULL,  # disk_full (also "could not extend file": quota)
    "25006": StoreFault.READ_ONLY,  # read_only_sql_transaction (a standby, or set read-only)
    "42501": StoreFault.PERMISSION,  # insufficient_privilege
    "28000": StoreFault.PERMISSION,  # invalid_authorization_specification
    "28P01": StoreFault.PERMISSION,  # invalid_password
    "58030": StoreFault.IO_ERROR,  # io_error
    "XX001": StoreFault.CORRUPT,  # data_corrupted
    "XX002": StoreFault.CORRUPT,  # index_corrupted
    "55P03": StoreFault.LOCKED,  # lock_not_available (lock_timeout)
    "57014": StoreFault.LOCKED,  # query_canceled (statement_timeout)
    "40001": StoreFault.LOCKED,  # serialization_failure
    "40P01": StoreFault.LOCKED,  # deadlock_detected
}
_PG_CLASSES = {
    "08": StoreFault.UNREACHABLE,  # connection exception
    "57": StoreFault.UNREACHABLE,  # operator intervention: shutting down, starting up
    "53": StoreFault.UNREACHABLE,  # insufficient resources: connections, memory (53100 above)
}
_ERRNOS = {
    errno.ENOSPC: StoreFault.DISK_FULL,
    errno.EDQUOT: StoreFault.QUOTA,
    errno.EROFS: StoreFault.READ_ONLY,
    errno.EACCES: StoreFault.PERMISSION,
    errno.EPERM: StoreFault.PERMISSION,
    errno.EIO: StoreFault.IO_ERROR,
}


def classify(err: BaseException) -> StoreFault | None:
    """The store fault behind `err`, or None when it is no store fault (a bug, a conflict).

    An unreachable store is the default for SQLAlchemy's OperationalError, InterfaceError,
    pool TimeoutError and a dropped connection that says nothing more precise."""
    from sqlalchemy import exc

    for cause in _chain(err):
        if (fault := _specific(cause)) is not None:
            return fault
    if isinstance(err, exc.DBAPIError) and err.connection_invalidated:
        return StoreFault.UNREACHABLE
    if isinstance(err, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
        return StoreFault.UNREACHABLE
    return None


def _chain(err: BaseException) -> list[BaseException]:
    """err, the driver's error SQLAlchemy wraps, and what each was raised from (bounded)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo and len(seen) < 8:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        orig = getattr(item, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, item.__cause__]
    return seen


def _specific(err: BaseException) -> StoreFault | None:
    if isinstance(err, sqlite3.Error):
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(code, int) and (fault := _SQLITE_CODES.get(code & 0xFF)):
            return fault
        text = str(err).lower()
        return next((f for msg, f in _SQLITE_MESSAGES.items() if msg in text), None)
    state = getattr(err, "sqlstate", None)
    if isinstance(state, str) and state:
        return _PG_STATES.get(state) or _PG_CLASSES.get(state[:2])
    if isinstance(err, OSError) and err.errno is not None:
        return _ERRNOS.get(err.errno)
    return None


def describe(err: BaseException) -> str:
    """`err` in words for a person: the fault's reason and the store's own message."""
    fault = classify(err)
    detail = str(getattr(err, "orig", None) or err).strip().splitlines()
    said = f" ({detail[0][:200]})" if detail else ""
    return f"{fault.reason}{said}" if fault else f"{type(err).__name__}{said}"
