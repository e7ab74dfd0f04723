"""Tests only: make SQLite itself refuse writes while a switch file exists (no raised fake).

`STACKLAB_TEST_DISK_FULL_FILE=<path>`: while <path> exists, every SQLite connection handed
out by a SQLAlchemy pool has its page limit at the file's current size (`PRAGMA
max_page_count`), so a write that needs a new page gets SQLite's own SQLITE_FULL
("database or disk is full"); use up the file's free pages too
(fill_free_pages below), or writes that fit in them still land.
`STACKLAB_TEST_READ_ONLY_FILE=<path>`: likewise `PRAGMA query_only`, SQLite's own
SQLITE_READONLY ("attempt to write a readonly database") for every write.

The product carries no test hook: this folder goes first on PYTHONPATH of the processes a
test starts (`python` imports `sitecustomize` at start-up), and a test in this process
imports this module. Self-contained: it runs before `tests` is importable.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3

SQLITE_MAX_PAGES = 4294967294  # SQLite's own ceiling: no limit
FOLDER = os.path.dirname(os.path.abspath(__file__))


def _switch(dbapi_connection, _record, _proxy) -> None:
    full = os.environ.get("STACKLAB_TEST_DISK_FULL_FILE")
    read_only = os.environ.get("STACKLAB_TEST_READ_ONLY_FILE")
    if not (full or read_only) or not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        if full:
            pages = SQLITE_MAX_PAGES
            if os.path.exists(full):
                pages = int(cursor.execute("PRAGMA page_count").fetchone()[0])
            cursor.execute(f"PRAGMA max_page_count = {pages:d}")
        if read_only:
            cursor.execute(f"PRAGMA query_only = {int(os.path.exists(read_only)):d}")
    finally:
        cursor.close()


FILLER = "stacklab_test_filler"


def fill_free_pages(path: str | os.PathLike[str]) -> None:
    """Use up the free pages inside a SQLite file, so at its page limit any write that needs
    a new page is refused (call it after turning the full-disk switch on)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {FILLER} (data BLOB)")
        conn.commit()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        for size in (1 << 20, 1 << 16, 4000, 1000, 200):
            while True:
                try:
                    conn.execute(f"INSERT INTO {FILLER} VALUES (zeroblob(?))", (size,))
                    conn.commit()
                except sqlite3.OperationalError:
                    conn.rollback()
                    break
    finally:
        conn.close()


def free_pages_again(path: str | os.PathLike[str]) -> None:
    """Give back what fill_free_pages took (after the switch is off)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute(f"DELETE FROM {FILLER}")
        conn.commit()
    finally:
        conn.close()


def install() -> None:
    """Every pool's checkout, in this process (once)."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    if not event.contains(Pool, "checkout", _switch):
        event.listen(Pool, "checkout", _switch)


def env_for_processes(env: dict[str, str]) -> dict[str, str]:
    """`env` with this folder first on PYTHONPATH, for a process a test starts."""
    path = [FOLDER, *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


if os.environ.get("STACKLAB_TEST_DISK_FULL_FILE") or os.environ.get("STACKLAB_TEST_READ_ONLY_FILE"):
    with contextlib.suppress(ImportError):  # a process without SQLAlchemy: nothing to switch
        install()
