"""Queue tests run twice: on Redis + PostgreSQL, and on the embedded defaults (SQLite).

On Redis + PostgreSQL every process (the workers and the test) reaches the database
through a TCP proxy, so a test can make the database refuse connections for a while.

Each stack starts once per test process and lives until the package's last test there,
whichever order its tests come in: a test takes its stack's environment for its own
duration (`stack`). One stack at a time, parametrized at package scope, was torn down and
started again at every switch between the two (twice a module), each start three workers
importing TensorFlow on a busy machine.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from jobspec.scheduling import Lane
from store import queue
from tests.chaos import TcpProxy
from tests.stack import FAST, REDIS_URL, Workers, create_pg_database, stack_env

STACKS = ("redis-postgres", "embedded")


def _start_stack(kind: str, tmp_path_factory) -> Iterator[dict]:
    """Schema, a tiny demo data set, two training workers and a CPU-lane one, for `kind`;
    yields what a test needs of it (its environment is applied per test by `stack`)."""
    data_dir = tmp_path_factory.mktemp(f"stack-{kind}")
    env = {
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
        **FAST,
    }
    drop, proxy = None, None
    if kind == "redis-postgres":
        url, drop = create_pg_database()
        proxy = TcpProxy.for_url(url, 5432)  # started by the with-statement below
        env["DATABASE_URL"], env["REDIS_URL"] = proxy.rewrite(url), REDIS_URL
    with proxy or contextlib.nullcontext():
        with stack_env(env):
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
            yield {"kind": kind, "workers": workers, "env": env, "db_proxy": proxy}
        finally:
            if proxy:
                proxy.restore()
            workers.stop_all(timeout=5)  # the stack ends here: no need to wait politely
    if drop:
        drop()


@pytest.fixture(scope="package")
def redis_postgres_stack(tmp_path_factory):
    yield from _start_stack("redis-postgres", tmp_path_factory)


@pytest.fixture(scope="package")
def embedded_stack(tmp_path_factory):
    yield from _start_stack("embedded", tmp_path_factory)


@pytest.fixture(params=STACKS)
def stack(request):
    """The test's stack (started once per test process), its environment applied while
    the test runs. `@pytest.mark.parametrize("stack", [...], indirect=True)` picks one."""
    started = request.getfixturevalue(f"{request.param.replace('-', '_')}_stack")
    with stack_env(started["env"]):
        yield started
