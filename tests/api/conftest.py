"""An app on a fresh database per module: SQLite (embedded) and PostgreSQL + Redis."""

from __future__ import annotations

import uuid

import pytest

from tests.queue.stack import REDIS_URL, create_pg_database, stack_env


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app_env(request, tmp_path_factory):
    """Environment for one storage backend, schema upgraded, a small data set registered."""
    env = {
        "STACKLAB_DATA_DIR": str(tmp_path_factory.mktemp(f"api-{request.param}")),
        "STACKLAB_QUEUE": f"api-test-{uuid.uuid4().hex[:8]}",
    }
    drop = None
    if request.param == "postgres":
        env["DATABASE_URL"], drop = create_pg_database()
        env["REDIS_URL"] = REDIS_URL
    with stack_env(env):
        from store.db import upgrade_schema
        from worker.datasets import register
        from worker.ml.demo_data import make_demo

        upgrade_schema()
        register(make_demo(seed=0, n_train=60, n_test=20), name="demo-tiny")
        yield env
    if drop:
        drop()
        _drop_redis_queue(env["STACKLAB_QUEUE"])


def _drop_redis_queue(name: str) -> None:
    """Tasks these tests queued are never run: leave Redis as we found it."""
    import redis

    redis.Redis.from_url(REDIS_URL).delete(name)


@pytest.fixture(scope="module")
def client(app_env):
    from fastapi.testclient import TestClient

    from backend.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client
