"""A web and a worker whose clocks are five minutes apart: a run launched through the web
trains on the worker and finishes with one attempt. Give-up, re-send and idle checks are
measured on the database's clock, so neither process's clock decides against the other's.

Each process's clock is shifted by STACKLAB_TEST_CLOCK_OFFSET_SECONDS (test-only); the
stale window is the suite's short one (4 s), so a give-up cutoff taken from the web's clock
(300 s ahead) would give the run up within a second of its claim.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import httpx
import pytest

from store import queue
from store.db import session_scope
from store.runs import service as runs_service
from store.runs.metrics import series
from store.timeutil import OFFSET_VARIABLE
from tests.queue.test_queue import finished, workers_online
from tests.stack import (
    FAST,
    REDIS_URL,
    Workers,
    create_pg_database,
    scaled,
    stack_env,
    start_web,
    wait_for,
)

pytestmark = pytest.mark.slow
SKEW = 300
QUICK = {
    "encoder": "scratch",
    "architecture": "single",
    "epochs": 3,
    "batch_size": 20,
    "bn_momentum": 0.9,
    "early_stopping": {"patience": 100},
}


@pytest.fixture(
    params=[("redis-postgres", SKEW, 0), ("embedded", 0, -SKEW)],
    ids=["redis-postgres-web-ahead", "embedded-worker-behind"],
)
def skewed(request, tmp_path):
    """A fresh stack; the web's clock runs 300 s ahead of its one worker's. Yields the web."""
    kind, web_offset, worker_offset = request.param
    env = {"STACKLAB_DATA_DIR": str(tmp_path), "STACKLAB_QUEUE": f"clock-{uuid.uuid4().hex[:8]}"}
    env.update(FAST)
    drop = None
    if kind == "redis-postgres":
        env["DATABASE_URL"], drop = create_pg_database()
        env["REDIS_URL"] = REDIS_URL
    assert OFFSET_VARIABLE not in os.environ  # this process keeps the true time
    try:
        with stack_env(env), contextlib.ExitStack() as stack:
            from store.db import upgrade_schema
            from worker.datasets import register
            from worker.ml.datasets.demo import make_demo

            upgrade_schema()
            register(make_demo(seed=0, n_train=200, n_test=50), name="demo-tiny")
            queue.declare()
            web = stack.enter_context(
                start_web(
                    {**os.environ, OFFSET_VARIABLE: str(web_offset)}, log=tmp_path / "web.log"
                )
            )
            workers = Workers({**os.environ, OFFSET_VARIABLE: str(worker_offset)}, tmp_path)
            stack.callback(workers.stop_all, timeout=5)
            workers.start("w1")
            wait_for(lambda: workers_online() >= 1, timeout=120, what="the worker online")
            yield web
    finally:
        if drop:
            drop()


def test_a_run_finishes_with_one_attempt_when_web_and_worker_clocks_are_5_minutes_apart(
    skewed,
):
    answer = httpx.post(
        f"{skewed.url}/api/runs",
        json={"kind": "finetune", "dataset": "demo-tiny", "name": "skewed", "params": QUICK},
        timeout=scaled(30),
    )
    assert answer.status_code == 201, answer.text
    [run] = answer.json()
    done = finished(run["id"])
    assert done.status == "succeeded", done.error
    assert done.attempts == 1
    with session_scope() as session:
        rows = [(a.number, a.outcome) for a in runs_service.list_attempts(session, run["id"])]
    assert rows == [(1, "succeeded")]  # never given up ("lost") nor handed round
    with session_scope() as session:
        assert [step for step, _ in series(session, run["id"])["finetune/loss"]] == [1, 2, 3]
