"""Queue tests run twice: on Redis + PostgreSQL, and on the embedded defaults (SQLite).

On Redis + PostgreSQL every process (the workers and the test) reaches the database
through a TCP proxy, so a test can make the database refuse connections for a while.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from jobspec.scheduling import Lane
from store import queue
from tests.chaos import TcpProxy
from tests.stack import FAST, REDIS_URL, Workers, create_pg_database, stack_env


@pytest.fixture(scope="package", params=["redis-postgres", "embedded"])
def stack(request, tmp_path_factory):
    """Environment, schema, a tiny demo data set, two training workers and a CPU-lane one."""
    data_dir = tmp_path_factory.mktemp(f"stack-{request.param}")
    env = {
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
        **FAST,
    }
    drop, proxy = None, None
    if request.param == "redis-postgres":
        url, drop = create_pg_database()
        proxy = TcpProxy.for_url(url, 5432)  # started by the with-statement below
        env["DATABASE_URL"], env["REDIS_URL"] = proxy.rewrite(url), REDIS_URL
    with stack_env(env), proxy or contextlib.nullcontext():
        from store.db import upgrade_schema
        from worker.datasets import register
        from worker.ml.datasets.demo import make_demo

        upgrade_schema()
        register(make_demo(seed=0, n_train=200, n_test=50), name="demo-tiny")
        queue.declare()  # two embedded workers creating it at once would crash one
        workers = Workers({**os.environ}, data_dir)
        workers.start("w1")
        workers.start("w2")
        workers.start("cpu-lane", Lane.CPU)  # imports and "evaluate now"
        try:
            yield {"kind": request.param, "workers": workers, "env": env, "db_proxy": proxy}
        finally:
            if proxy:
                proxy.restore()
            workers.stop_all(timeout=5)  # the stack ends here: no need to wait politely
    if drop:
        drop()
