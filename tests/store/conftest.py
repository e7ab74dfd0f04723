"""The store's tests run on SQLite and on PostgreSQL, each on a fresh database."""

from __future__ import annotations

import pytest

from tests.stack import create_pg_database, stack_env


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request, tmp_path_factory):
    """A migrated database and a registered tiny data set; yields the data set's id."""
    env = {"STACKLAB_DATA_DIR": str(tmp_path_factory.mktemp(f"store-{request.param}"))}
    drop = None
    if request.param == "postgres":
        env["DATABASE_URL"], drop = create_pg_database()
    with stack_env(env):
        from store.db import upgrade_schema
        from worker.datasets import register
        from worker.ml.datasets.demo import make_demo

        upgrade_schema()
        yield register(make_demo(seed=1, n_train=40, n_test=10), name="demo-store")
    if drop:
        drop()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    """An empty store's URL, one per test, on each database: the migration tests build an
    old schema there and upgrade it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    url, drop = create_pg_database()
    yield url
    drop()
