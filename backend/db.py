"""Engine, sessions and schema upgrades, for the web (SessionDep) and the worker (scopes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from backend.config import get_settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# Optuna keeps its studies in the same database with its own Alembic table; ours differs.
VERSION_TABLE = "stacklab_alembic_version"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def load_models() -> None:
    """Import every ORM model, so foreign keys resolve in any process."""
    from backend import models  # noqa: F401


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the web read while a worker writes; the busy timeout rides out short locks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine with SQLite's pragmas set on every connection."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@lru_cache
def get_engine() -> Engine:
    """The process's engine for the configured database."""
    return make_engine(get_settings().sqlalchemy_url)


@lru_cache
def _factory() -> sessionmaker[Session]:
    load_models()
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


def alembic_config(url: str):
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


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """PostgreSQL: an advisory lock. SQLite: a lock file beside the data."""
    if url.startswith("postgresql"):
        engine = make_engine(url)
        with engine.connect() as conn:
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
