"""Connections give up instead of hanging, with the limits the settings name."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.stack import PG_ADMIN_URL, stack_env


@pytest.fixture
def limits(monkeypatch, tmp_path):
    monkeypatch.setenv("STACKLAB_DB_LOCK_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("STACKLAB_DB_STATEMENT_TIMEOUT_SECONDS", "7")
    monkeypatch.setenv("STACKLAB_BROKER_TIMEOUT_SECONDS", "1")
    with stack_env({"STACKLAB_DATA_DIR": str(tmp_path)}):
        yield tmp_path


def test_postgres_connections_carry_statement_and_lock_timeouts(limits):
    from store.db import make_engine

    engine = make_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SHOW lock_timeout")) == "1500ms"
            assert conn.scalar(sa.text("SHOW statement_timeout")) == "7s"
    finally:
        engine.dispose()


def test_sqlite_busy_timeout_is_the_lock_timeout(limits):
    from store.db import make_engine

    engine = make_engine(f"sqlite:///{limits / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1500
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_embedded_queue_check_passes_on_a_writable_data_dir(limits):
    from store import queue

    queue.check()
    assert queue.broker_name() == "the embedded queue file"


def test_an_unreachable_broker_is_named_without_its_password(limits, monkeypatch):
    from store import queue
    from tests.stack import reset_process_state

    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@127.0.0.1:1/0")  # nothing listens on 1
    reset_process_state()
    # Each gives up (Celery's default would retry a dead broker for ever: pytest-timeout).
    for action in (queue.check, lambda: queue.enqueue("pretrain", 1)):
        with pytest.raises(queue.QueueUnavailable) as caught:
            action()
        assert "Redis at 127.0.0.1:1" in str(caught.value)
        assert "s3cret" not in str(caught.value)
