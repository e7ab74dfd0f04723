"""Can the store write? A cheap write probe, and the answer the web reuses for a few seconds.

`SELECT 1` answers on a store whose disk is full, whose file system went read-only or
whose role lost its privileges; only a write tells. The probe writes for real and rolls
back: SQLite creates a table and fills 64 KiB (new pages: what a full disk or SQLite's page
limit refuses) and also reads the free space of its disk, since a rolled-back write never
reaches the file; PostgreSQL updates its one-row version table (read-only transactions,
standbys and revoked privileges refuse at once). The upkeep of every process probes before
it reaps, so nobody is given up for dead while the store refuses the writes that would
prove them alive.

Tests make SQLite itself refuse (SQLITE_FULL from its page limit, SQLITE_READONLY from
query_only) through tests/fault_switch, never through a hook in this package.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from store.faults import StoreFault, classify, describe

PROBE_BYTES = 64 * 1024
_VERSION_TABLE = "stacklab_alembic_version"  # store.db.VERSION_TABLE (imported there)


@dataclass(frozen=True)
class Finding:
    """What the last probe found: a fault (None: the store takes writes) and its words."""

    fault: StoreFault | None
    detail: str = ""
    at: float = 0.0  # time.monotonic() of the probe

    @property
    def message(self) -> str:
        """A sentence for a person ("The store's disk is full (...)."), empty when fine."""
        if self.fault is None:
            return ""
        return self.detail[:1].upper() + self.detail[1:] + "."


def require_writable(engine: Engine) -> None:
    """Raise the store's own error (or an OSError naming the disk) unless it takes a write."""
    if engine.dialect.name == "sqlite":
        _check_disk(engine)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("BEGIN")  # the driver would run CREATE TABLE outside a transaction
            cursor.execute("CREATE TABLE stacklab_write_probe (data BLOB)")
            cursor.execute("INSERT INTO stacklab_write_probe VALUES (zeroblob(?))", (PROBE_BYTES,))
        finally:
            raw.rollback()
            raw.close()
        return
    with engine.connect() as conn:
        conn.exec_driver_sql(f"UPDATE {_VERSION_TABLE} SET version_num = version_num")
        conn.rollback()


def _check_disk(engine: Engine) -> None:
    """A read-only mount or (nearly) no free space under the SQLite file, as an OSError."""
    from store.settings import get_settings

    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).resolve().parent
    stat = os.statvfs(folder)
    if stat.f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, f"the file system of {folder} is mounted read-only")
    free = stat.f_bavail * stat.f_frsize
    if free < get_settings().store_min_free_mb * 2**20:
        raise OSError(errno.ENOSPC, f"{free / 2**20:.1f} MiB free under {folder}")


def probe(engine: Engine) -> Finding:
    """Probe now: a Finding with the fault, or raise an error that is no store fault."""
    try:
        require_writable(engine)
    except Exception as err:
        fault = classify(err)
        if fault is None:
            raise
        return Finding(fault, describe(err), time.monotonic())
    return Finding(None, "", time.monotonic())


class Health:
    """One process's last probe, reused for `max_age` seconds (the web asks on every
    /api/ready, launch and page; the store is probed once per window)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Finding | None = None

    def note(self, finding: Finding) -> None:
        """A probe someone else made (the upkeep's): kept as the latest."""
        with self._lock:
            self._last = finding

    def last(self, *, max_age: float) -> Finding | None:
        """The latest finding if younger than max_age; never probes."""
        with self._lock:
            last = self._last
        if last is None or time.monotonic() - last.at > max_age:
            return None
        return last

    def check(self, engine: Engine, *, max_age: float) -> Finding:
        """The latest finding, probing first when it is older than max_age or was a
        passing fault (an unreachable or locked store is asked again at once)."""
        last = self.last(max_age=max_age)
        if last is not None and (last.fault is None or not last.fault.transient):
            return last
        return self._probe(engine)

    def _probe(self, engine: Engine) -> Finding:
        finding = probe(engine)
        self.note(finding)
        return finding

    def forget(self) -> None:
        """Tests switch stores."""
        with self._lock:
            self._last = None


HEALTH = Health()


def require_writable_noted(bind: Engine | Connection) -> None:
    """require_writable, its outcome kept in HEALTH (the upkeep's probe feeds the web's)."""
    try:
        require_writable(bind.engine)
    except Exception as err:
        if (fault := classify(err)) is not None:
            HEALTH.note(Finding(fault, describe(err), time.monotonic()))
        raise
    HEALTH.note(Finding(None, "", time.monotonic()))
