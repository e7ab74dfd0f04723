"""The job-kind contract: a toy kind with one parameter (tests/toykind.py), plugged in as
docs/ARCHITECTURE.md's "Adding a job kind" says, on SQLite and on PostgreSQL + Redis, is
launched through the API, trained by a real worker process, and then every GET page and
JSON route of the app that takes no parameter or a run id answers without a 5xx while
runs of it are queued, running, succeeded, failed and cancelled.

The routes are read from the app itself: a route added later is covered without a change
here. Routes keyed by something other than a run (a data set, a group) are left out.
"""

from __future__ import annotations

import importlib
import os
import re
import uuid

import pytest

from jobspec import kinds
from store import queue
from tests.stack import REDIS_URL, Workers, create_pg_database, stack_env, wait_for

PLUGIN = "tests.toykind"
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
RUN_PARAM = re.compile(r"\{run_id(:int)?\}")
ANY_PARAM = re.compile(r"\{[^}]+\}")
LONG = 5_000  # sheep: a run that counts (minutes) until it is cancelled

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy():
    """The toy kind, registered in this process as the plug-in setting does in workers."""
    module = importlib.import_module(PLUGIN)
    if module.NAME not in kinds.names():  # imported (and registered) by an earlier module
        kinds.register(module.SHEEP_COUNT)
    yield module
    kinds.unregister(module.NAME)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request, tmp_path_factory, toy):
    """A fresh database, a tiny data set, one real worker that knows the toy kind (through
    STACKLAB_KIND_MODULES) and the web app in this process."""
    data_dir = tmp_path_factory.mktemp(f"contract-{request.param}")
    env = {
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_QUEUE": f"contract-{uuid.uuid4().hex[:8]}",
        "STACKLAB_EMBEDDED_POLL_SECONDS": "0.1",
        "STACKLAB_PROGRESS_INTERVAL_SECONDS": "0.2",
        "STACKLAB_POLL_CACHE_SECONDS": "0",
    }
    drop = None
    if request.param == "postgres":
        env["DATABASE_URL"], drop = create_pg_database()
        env["REDIS_URL"] = REDIS_URL
    with stack_env(env):
        from fastapi.testclient import TestClient

        from backend.main import create_app
        from store.db import upgrade_schema
        from worker.datasets import register
        from worker.ml.datasets.demo import make_demo

        upgrade_schema()
        register(make_demo(seed=0, n_train=60, n_test=20), name="demo-tiny")
        queue.declare()
        workers = Workers({**os.environ, kinds.PLUGIN_ENV: PLUGIN}, data_dir)
        workers.start("contract")
        try:
            with TestClient(create_app(), raise_server_exceptions=False) as client:
                yield client
        finally:
            workers.stop_all(timeout=10)
    if drop:
        drop()


def launch(client, toy, sheep: int) -> int:
    response = client.post(
        "/api/runs", json={"kind": toy.NAME, "dataset": "demo-tiny", "params": {"sheep": sheep}}
    )
    assert response.status_code == 201, response.text
    return response.json()[0]["id"]


def run_of(client, run_id: int) -> dict:
    response = client.get(f"/api/runs/{run_id}")
    assert response.status_code == 200, response.text
    return response.json()


def reach(client, run_id: int, status: str, *, counting: bool = False) -> dict:
    """Wait for the run's status (and, when `counting`, for its first epoch)."""

    def there():
        run = run_of(client, run_id)
        epoch = (run.get("progress") or {}).get("epoch")
        return run if run["status"] == status and (not counting or epoch) else None

    return wait_for(there, timeout=180, what=f"run {run_id} {status}")


def get_routes(app) -> list[str]:
    """Every GET route's path in the app, included routers walked."""

    def walk(routes, prefix=""):
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from walk(inner.routes, prefix + (route.include_context.prefix or ""))
            elif "GET" in (getattr(route, "methods", None) or ()):
                yield prefix + route.path

    return sorted(set(walk(app.router.routes)))


def urls(paths: list[str], runs: dict[str, int], toy) -> list[str]:
    """The paths with no parameter (plain, and filtered to the toy's runs) and those of one
    run id, for every toy run."""
    ids = ",".join(str(i) for i in runs.values())
    out = []
    for path in paths:
        params = ANY_PARAM.findall(path)
        if not params:
            out += [path, f"{path}?kind={toy.NAME}&ids={ids}"]
        elif len(params) == 1 and RUN_PARAM.fullmatch(params[0]):
            out += [RUN_PARAM.sub(str(run_id), path) for run_id in runs.values()]
    return out


def test_a_plugged_in_kind_runs_on_a_real_worker_and_every_page_renders(stack, toy):
    client = stack
    runs = {"succeeded": launch(client, toy, 2), "failed": launch(client, toy, toy.UNLUCKY)}
    done = reach(client, runs["succeeded"], "succeeded")
    assert done["result"]["counted"] == 2
    assert "unlucky" in reach(client, runs["failed"], "failed")["error"]
    runs["cancelled"] = launch(client, toy, LONG)
    reach(client, runs["cancelled"], "running", counting=True)
    assert client.post(f"/api/runs/{runs['cancelled']}/cancel").status_code == 200
    reach(client, runs["cancelled"], "cancelled")
    runs["running"] = launch(client, toy, LONG)
    reach(client, runs["running"], "running", counting=True)
    runs["queued"] = launch(client, toy, 2)  # the only worker is busy: it waits
    try:
        assert {state: run_of(client, i)["status"] for state, i in runs.items()} == {
            state: state for state in STATES
        }
        paths = get_routes(client.app)
        assert "/runs/{run_id:int}" in paths and "/api/runs/{run_id}" in paths
        checked = urls(paths, runs, toy)
        errors = {}
        for url in checked:
            response = client.get(url)
            if response.status_code >= 500:
                errors[url] = response.status_code
        assert not errors, errors
        assert len(checked) > 5 * len(STATES)
    finally:
        for state in ("queued", "running"):
            client.post(f"/api/runs/{runs[state]}/cancel")
        reach(client, runs["running"], "cancelled")
