"""Queue tests run twice: on Redis + PostgreSQL, and on the embedded defaults (SQLite)."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.queue.stack import FAST, REDIS_URL, Workers, create_pg_database

STACK_VARS = ("STACKLAB_DATA_DIR", "DATABASE_URL", "REDIS_URL", "STACKLAB_QUEUE", *FAST)


def _reset_process_state() -> None:
    from backend import queue
    from backend.db import reset_caches

    reset_caches()
    queue.client.cache_clear()


@pytest.fixture(scope="module", params=["redis-postgres", "embedded"])
def stack(request, tmp_path_factory):
    """Environment, schema, a tiny demo data set and two running workers."""
    data_dir = tmp_path_factory.mktemp(f"stack-{request.param}")
    env = {
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
        **FAST,
    }
    drop = None
    if request.param == "redis-postgres":
        env["DATABASE_URL"], drop = create_pg_database()
        env["REDIS_URL"] = REDIS_URL
    saved = {key: os.environ.get(key) for key in STACK_VARS}
    for key in STACK_VARS:
        os.environ.pop(key, None)
    os.environ.update(env)
    _reset_process_state()

    from backend.db import upgrade_schema
    from worker.datasets import register
    from worker.ml.demo_data import make_demo

    upgrade_schema()
    register(make_demo(seed=0, n_train=200, n_test=50), name="demo-tiny")
    workers = Workers({**os.environ}, data_dir)
    workers.start("w1")
    workers.start("w2")
    yield {"kind": request.param, "workers": workers, "env": env}
    workers.stop_all()
    _reset_process_state()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if drop:
        drop()
