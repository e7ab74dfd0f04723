"""Issue 21's acceptance test: the queue panel's order is the order runs start in.

30 runs of mixed priorities and token names are queued behind a first run that holds the
only worker; the queue panel (GET /api/queue) is read; the first run is cancelled, the
worker runs the 30, and the order of their starts must equal the order the panel showed.
On the embedded stack (SQLite store, SQLAlchemy transport) and on PostgreSQL + Redis.

The runs are of the toy kind (tests/toykind.py: one sheep, one 0.05 s epoch, no training),
plugged into the worker through STACKLAB_KIND_MODULES, so 30 runs take seconds. The owners
are set as the token names that launched them (store launch's `launched_by`, as the API
sets it from the request's token), the open site (None) among them.
"""

from __future__ import annotations

import importlib
import os
import random
import uuid

import pytest

from jobspec import kinds
from jobspec.scheduling import Lane
from jobspec.status import RunStatus
from store import clock, queue, scheduler
from store.db import session_scope
from store.runs import launch as launcher
from store.runs.models import Run, RunAttempt
from store.runs.schemas import RunCreate
from tests.stack import FAST, REDIS_URL, Workers, create_pg_database, stack_env, wait_for

pytestmark = pytest.mark.slow

PLUGIN = "tests.toykind"
LONG = 5_000  # sheep: the first run counts (minutes) until it is cancelled
RUNS = 30
OWNERS = ("ana", "ben", "cy", None)
PRIORITIES = (0, 0, 0, 5, 10)
GATE = 100  # the first run's priority: nothing queued outranks it (and sets it aside)


@pytest.fixture(scope="module")
def toy():
    """The toy kind, registered in this process as the plug-in setting does in workers."""
    module = importlib.import_module(PLUGIN)
    if module.NAME not in kinds.names():  # imported (and registered) by an earlier module
        kinds.register(module.SHEEP_COUNT)
    yield module
    kinds.unregister(module.NAME)


@pytest.fixture(scope="module", params=["embedded", "redis-postgres"])
def one_worker(request, tmp_path_factory, toy):
    """A fresh store, one real worker that knows the toy kind, and the app's client."""
    data_dir = tmp_path_factory.mktemp(f"order-{request.param}")
    name = f"order-{uuid.uuid4().hex[:8]}"
    env = {
        **FAST,
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_QUEUE": name,
        "STACKLAB_CPU_QUEUE": f"{name}-cpu",
        "STACKLAB_POLL_CACHE_SECONDS": "0",
        "STACKLAB_MAX_PRIORITY": str(GATE),
        "STACKLAB_PREEMPTION": "false",
    }
    drop = None
    if request.param == "redis-postgres":
        env["DATABASE_URL"], drop = create_pg_database()
        env["REDIS_URL"] = REDIS_URL
    with stack_env(env):
        from fastapi.testclient import TestClient

        from backend.main import create_app
        from store.db import reset_caches, upgrade_schema
        from worker.datasets import register
        from worker.ml.datasets.demo import make_demo

        reset_caches()
        upgrade_schema()
        register(make_demo(seed=0, n_train=40, n_test=10), name="demo-tiny")
        queue.declare()
        workers = Workers({**os.environ, kinds.PLUGIN_ENV: PLUGIN}, data_dir)
        workers.start("order")
        try:
            with TestClient(create_app()) as client:
                yield client
        finally:
            workers.stop_all(timeout=10)
    if drop:
        drop()
        _forget_redis_queues(name, f"{name}-cpu")


def _forget_redis_queues(*names: str) -> None:
    """kombu leaves the queues and their bindings in Redis; these names are ours alone."""
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        for name in names:
            client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


def launch(toy, *, sheep: int, priority: int, owner: str | None) -> int:
    request = RunCreate(
        kind=toy.NAME, dataset="demo-tiny", params={"sheep": sheep}, priority=priority
    )
    with session_scope() as session:
        [run] = launcher.launch(session=session, run_in=request, launched_by=owner)
        return run.id


def status(run_id: int) -> tuple[RunStatus, int | None]:
    """The run's status and the epoch it reached."""
    with session_scope() as session:
        run = session.get_one(Run, run_id)
        return run.status, (run.progress or {}).get("epoch")


def panel_order(client, ids: set[int]) -> list[int]:
    """The order the queue panel shows for these runs: its places (GET /api/queue), or,
    while the panel has no place yet, scheduler.plan over the same rows as it would."""
    response = client.get("/api/queue")
    assert response.status_code == 200, response.text
    rows = [row for row in response.json()["queued"] if row["id"] in ids]
    assert {row["id"] for row in rows} == ids
    if all("place" in row for row in rows):
        assert all(row["place"] is not None for row in rows), rows
        return [row["id"] for row in sorted(rows, key=lambda row: row["place"])]
    return _planned(ids)


def _planned(ids: set[int]) -> list[int]:
    with session_scope() as session:
        queued = list(session.query(Run).filter(Run.id.in_(ids)))
        waiting = [
            scheduler.Waiting(r.id, r.launched_by, r.priority, r.queued_at, r.kind) for r in queued
        ]
        shares = scheduler.Shares.read(session, {r.launched_by for r in queued})
        slot = scheduler.Slot("order", scheduler.Capacity(Lane.TRAINING))
        placed = scheduler.plan(
            waiting=waiting, busy=[], slots=[slot], shares=shares, now=clock.now(session)
        )
    return [p.id for p in sorted(placed, key=lambda p: p.place or 0)]


def start_order(ids: set[int]) -> list[int]:
    """The runs by the start of their first attempt (the database's clock)."""
    with session_scope() as session:
        firsts = session.query(RunAttempt.run_id, RunAttempt.started_at).filter(
            RunAttempt.run_id.in_(ids), RunAttempt.number == 1
        )
        return [run_id for run_id, _ in sorted(firsts, key=lambda row: (row[1], row[0]))]


def test_runs_start_in_the_order_the_queue_panel_shows(one_worker, toy):
    client = one_worker
    gate = launch(toy, sheep=LONG, priority=GATE, owner="gate")
    wait_for(
        lambda: (now := status(gate))[0] == RunStatus.RUNNING and now[1],
        timeout=180,
        what=f"run {gate} to hold the worker",
    )
    rng = random.Random(21)
    ids = {
        launch(toy, sheep=1, priority=rng.choice(PRIORITIES), owner=rng.choice(OWNERS))
        for _ in range(RUNS)
    }
    shown = panel_order(client, ids)
    assert client.post(f"/api/runs/{gate}/cancel").status_code == 200

    def all_done() -> bool:
        return all(status(run_id)[0] in RunStatus.finished() for run_id in ids)

    wait_for(all_done, timeout=240, what=f"the {RUNS} runs to finish")
    assert {status(run_id)[0] for run_id in ids} == {RunStatus.SUCCEEDED}
    with session_scope() as session:
        mix = {(r.priority, r.launched_by) for r in session.query(Run).filter(Run.id.in_(ids))}
    assert len({p for p, _ in mix}) > 1 and len({o for _, o in mix}) > 1  # a real mix
    assert start_order(ids) == shown
