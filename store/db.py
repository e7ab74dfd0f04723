"""Engine, sessions and schema upgrades, for the web (SessionDep) and the worker (scopes)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from store import models  # noqa: F401  (every table, so foreign keys resolve anywhere)
from store.settings import Settings, get_settings
from store.text_column import json_loads, sqlite_text

if TYPE_CHECKING:
    from alembic.config import Config

# Optuna keeps its studies in the same database with its own Alembic table; ours differs.
VERSION_TABLE = "stacklab_alembic_version"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(busy_ms: int) -> Callable[[DBAPIConnection, ConnectionPoolEntry], None]:
    def set_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # WAL lets the web read while a worker writes; the busy timeout rides out short locks.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # TEXT that is not UTF-8 (written by hand) reads with U+FFFD instead of raising.
        dbapi_connection.text_factory = sqlite_text

    return set_pragmas


def make_engine(url: str) -> Engine:
    """An engine whose connections give up instead of hanging (timeouts from the settings).

    PostgreSQL: connect_timeout, statement_timeout and lock_timeout on every connection, and
    a bounded wait for a pooled one. SQLite: WAL, foreign keys and a busy timeout.
    """
    settings = get_settings()
    lock_s = settings.db_lock_timeout_seconds
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": lock_s},
            json_deserializer=json_loads,  # stored strings read back showable
        )
        event.listen(engine, "connect", _sqlite_pragmas(round(lock_s * 1000)))
        return engine
    connect_args = {}
    if url.startswith("postgresql"):
        connect_args = _pg_timeouts(url, settings)
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=settings.db_connect_timeout_seconds,
        connect_args=connect_args,
        json_deserializer=json_loads,
    )
    event.listen(engine, "handle_error", _failed_ping_is_a_disconnect)
    return engine


def _failed_ping_is_a_disconnect(context: ExceptionContext) -> None:
    """A pooled connection whose ping fails in any way is dead: drop it and connect anew.

    psycopg can fail a ping on a socket cut mid-way with ProgrammingError ("can't change
    'autocommit' now"), which SQLAlchemy does not read as a disconnect: the request would
    end in a 500 instead of reconnecting (or a 503 while the database is away)."""
    if context.is_pre_ping:
        context.is_disconnect = True


def _pg_timeouts(url: str, settings: Settings) -> dict[str, int | str]:
    """libpq's connect_timeout (whole seconds, at least 1) and server-side timeouts in ms."""
    from sqlalchemy.engine import make_url

    given = make_url(url).query.get("options")  # kept: what the URL already asks for
    options = " ".join(
        part
        for part in (
            *((given,) if isinstance(given, str) else given or ()),  # once or repeated
            f"-c statement_timeout={round(settings.db_statement_timeout_seconds * 1000)}",
            f"-c lock_timeout={round(settings.db_lock_timeout_seconds * 1000)}",
        )
        if part
    )
    return {
        "connect_timeout": max(1, math.ceil(settings.db_connect_timeout_seconds)),
        "options": options,
    }


@lru_cache
def get_engine() -> Engine:
    """The process's engine for the configured database."""
    return make_engine(get_settings().sqlalchemy_url)


@lru_cache
def _factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, always close."""
    session = _factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_session() -> Iterator[Session]:
    """FastAPI dependency: a session per request."""
    with session_scope() as session:
        yield session


def alembic_config(url: str) -> Config:
    """Alembic's config pointed at our migrations and the given database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_schema(url: str | None = None) -> None:
    """Bring the database to the newest schema (run at web and worker start).

    Optuna's tables too: created here, once, rather than raced for by parallel tune workers.
    """
    from alembic import command
    from optuna.storages import RDBStorage

    url = url or get_settings().sqlalchemy_url
    with _schema_lock(url):  # the web and every worker upgrade at start: one at a time
        command.upgrade(alembic_config(url), "head")
        RDBStorage(url).engine.dispose()


def no_request_timeouts(conn: Connection) -> None:
    """Lift the statement and lock timeouts on one connection (migrations may be long)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET statement_timeout = 0")
        conn.exec_driver_sql("SET lock_timeout = 0")
        conn.commit()  # session-level settings stay; the caller starts clean


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """PostgreSQL: an advisory lock. SQLite: a lock file beside the data."""
    if url.startswith("postgresql"):
        engine = make_engine(url)
        with engine.connect() as conn:
            no_request_timeouts(conn)  # waiting for another process's upgrade is fine
            conn.exec_driver_sql("SELECT pg_advisory_lock(72157)")
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(72157)")
        engine.dispose()
        return
    import fcntl

    lock_path = get_settings().data_dir / ".schema.lock"
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def reset_caches() -> None:
    """Forget the engine and settings (tests switch databases)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _factory.cache_clear()
    get_settings.cache_clear()
    from store.health import HEALTH

    HEALTH.forget()  # its last probe was of the old store


def is_transient(err: BaseException) -> bool:
    """A store error worth retrying: the database is unreachable, restarting or locked.

    A full disk, a read-only store, a quota, a permission or a damaged file is not: see
    store.faults, which names the cause."""
    from store.faults import classify

    fault = classify(err)
    return fault is not None and fault.transient
