"""Queue tests run twice: on Redis + PostgreSQL, and on the embedded defaults (SQLite)."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.queue.stack import FAST, REDIS_URL, Workers, create_pg_database, stack_env


@pytest.fixture(scope="package", params=["redis-postgres", "embedded"])
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
    with stack_env(env):
        from backend.db import upgrade_schema
        from worker.datasets import register
        from worker.ml.demo_data import make_demo

        upgrade_schema()
        register(make_demo(seed=0, n_train=200, n_test=50), name="demo-tiny")
        workers = Workers({**os.environ}, data_dir)
        workers.start("w1")
        workers.start("w2")
        try:
            yield {"kind": request.param, "workers": workers, "env": env}
        finally:
            workers.stop_all()
    if drop:
        drop()
