"""The database or the queue away: plain 503s, nothing half-done, no request hangs.

Real PostgreSQL and Redis, each behind a TcpProxy the tests refuse, stall or restore.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from tests.chaos import TcpProxy
from tests.stack import PG_ADMIN_URL, REDIS_URL, create_pg_database, stack_env

LOCK_TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0
TIMEOUTS = {
    "STACKLAB_DB_LOCK_TIMEOUT_SECONDS": str(LOCK_TIMEOUT),
    "STACKLAB_DB_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT),
    "STACKLAB_DB_STATEMENT_TIMEOUT_SECONDS": "10",
    "STACKLAB_BROKER_TIMEOUT_SECONDS": "1",
}
PRETRAIN = {"ae01": {"epochs": 1}, "ae02": {"epochs": 1}, "ae03": {"epochs": 1}}
RUN = {"kind": "pretrain", "dataset": "demo-tiny", "params": PRETRAIN}
STUDY = {"dataset": "demo-tiny", "params": {"encoder": "scratch", "epochs": 1}, "seeds": [0, 1]}


@dataclass
class Stack:
    client: object  # fastapi.testclient.TestClient
    db: TcpProxy  # between the app and PostgreSQL
    broker: TcpProxy  # between the app and Redis
    direct: sa.Engine  # the test's own way into the database, around the proxy

    def snapshot(self) -> dict:
        """Every row of runs and run_groups, and how many metric rows there are."""
        with self.direct.connect() as conn:
            return {
                "runs": conn.execute(sa.text("SELECT * FROM runs ORDER BY id")).all(),
                "groups": conn.execute(sa.text("SELECT * FROM run_groups ORDER BY id")).all(),
                "metrics": conn.scalar(sa.text("SELECT count(*) FROM metrics")),
            }


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    url, drop = create_pg_database()
    queue_name = f"unavailable-{uuid.uuid4().hex[:8]}"
    with (
        TcpProxy.for_url(PG_ADMIN_URL, 5432) as db,
        TcpProxy.for_url(REDIS_URL, 6379) as broker,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key, value in TIMEOUTS.items():
            mp.setenv(key, value)
        env = {
            "STACKLAB_DATA_DIR": str(tmp_path_factory.mktemp("unavailable")),
            "STACKLAB_QUEUE": queue_name,
            "DATABASE_URL": db.rewrite(url),
            "REDIS_URL": broker.rewrite(REDIS_URL),
        }
        with stack_env(env):
            from fastapi.testclient import TestClient

            import backend.main
            from backend.main import create_app
            from store.db import upgrade_schema
            from worker.datasets import register
            from worker.ml.datasets.demo import make_demo

            # The snapshots compare every row: the web's upkeep must not touch one between
            # two of them whenever a slow machine lets a run's times age (tests/store has it).
            mp.setattr(backend.main, "_upkeep", lambda stop: None)
            upgrade_schema()
            register(make_demo(seed=0, n_train=60, n_test=20), name="demo-tiny")
            direct = sa.create_engine(url)
            with TestClient(create_app()) as client:
                yield Stack(client, db, broker, direct)
            direct.dispose()
    drop()
    import redis

    redis.Redis.from_url(REDIS_URL).delete(queue_name)


@pytest.fixture(autouse=True)
def healthy(stack) -> Iterator[None]:
    """Each test starts with both services reachable, whatever the last one did."""
    stack.db.restore()
    stack.broker.restore()
    yield
    stack.db.restore()
    stack.broker.restore()


def _launch(stack: Stack) -> dict:
    response = stack.client.post("/api/runs", json=RUN)
    assert response.status_code == 201, response.text
    return response.json()[0]


def _fail(stack: Stack, run_id: int) -> None:
    """A failed run with a metric, as a worker would have left it."""
    with stack.direct.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET status = 'failed' WHERE id = :id"), {"id": run_id})
        conn.execute(
            sa.text(
                "INSERT INTO metrics (run_id, key, step, value, wall_time) "
                "VALUES (:id, 'ae01/loss', 0, 0.5, 0)"
            ),
            {"id": run_id},
        )


def _assert_503(response, *, mentions: str) -> str:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    detail = response.json()["detail"]
    assert mentions in detail and "try again" in detail
    assert "redis://" not in detail and "postgresql" not in detail
    return detail


def test_queue_down_actions_answer_503_and_change_nothing(stack):
    source = _launch(stack)
    failed = _launch(stack)
    _fail(stack, failed["id"])
    before = stack.snapshot()
    stack.broker.refuse()
    actions = {
        "launch": lambda: stack.client.post("/api/runs", json=RUN),
        "clone": lambda: stack.client.post(f"/api/runs/{source['id']}/clone", json={}),
        "requeue": lambda: stack.client.post(f"/api/runs/{failed['id']}/requeue"),
        "study": lambda: stack.client.post("/api/augmentation-studies", json=STUDY),
    }
    for action in actions.values():
        _assert_503(action(), mentions="job queue")
    assert stack.snapshot() == before  # no run, no group, no lost metric, no status change
    stack.broker.restore()
    requeued = stack.client.post(f"/api/runs/{failed['id']}/requeue")
    assert requeued.status_code == 200 and requeued.json()["status"] == "queued"
    study = stack.client.post("/api/augmentation-studies", json=STUDY)
    assert study.status_code == 201
    group = stack.client.get("/api/runs", params={"group_id": study.json()["group_id"]}).json()
    assert group["total"] == 4


def test_a_bad_request_is_still_422_with_the_queue_down(stack):
    stack.broker.refuse()
    response = stack.client.post("/api/runs", json={**RUN, "dataset": "nope"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "dataset"]


def test_cancel_succeeds_when_only_the_revoke_fails(stack):
    run = _launch(stack)
    stack.broker.refuse()
    response = stack.client.post(f"/api/runs/{run['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_a_send_that_fails_after_the_commit_leaves_the_run_queued(stack, monkeypatch):
    from store import queue

    monkeypatch.setattr(queue, "check", lambda: None)  # the broker goes between check and send
    stack.broker.refuse()
    response = stack.client.post("/api/runs", json=RUN)
    assert response.status_code == 201, response.text
    run_id = response.json()[0]["id"]
    with stack.direct.connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, task_id, sent_at FROM runs WHERE id = :id"), {"id": run_id}
        ).one()
    assert (row.status, row.task_id, row.sent_at) == ("queued", None, None)  # for the reconciler


def test_database_down_is_503_json_for_the_api_and_a_page_for_browsers(stack):
    stack.db.refuse()
    _assert_503(stack.client.get("/api/runs"), mentions="database")
    page = stack.client.get("/runs", headers={"accept": "text/html"})
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "Service unavailable" in page.text and "database is not answering" in page.text
    assert "Internal Server Error" not in page.text and "postgresql" not in page.text
    stack.db.restore()
    assert stack.client.get("/api/runs").status_code == 200


def test_health_stays_live_while_ready_names_what_is_down(stack):
    stack.broker.refuse()
    assert stack.client.get("/api/health").status_code == 200
    ready = stack.client.get("/api/ready")
    assert ready.status_code == 503
    assert ready.json()["database"] == "ok" and ready.json()["queue"] == "unavailable"
    stack.db.refuse()
    assert stack.client.get("/api/health").status_code == 200
    ready = stack.client.get("/api/ready").json()
    assert ready["database"] == ready["queue"] == "unavailable"
    assert "database" in ready["detail"] and "job queue" in ready["detail"]
    stack.db.restore()
    stack.broker.restore()
    ready = stack.client.get("/api/ready")
    assert ready.status_code == 200 and ready.json() == {"database": "ok", "queue": "ok"}


def test_ready_answers_in_time_when_the_database_hangs(stack):
    stack.client.get("/api/ready")  # a pooled connection, which the stall then freezes
    stack.db.stall()  # until the answer came: only the app's own timeout could end the wait
    ready = stack.client.get("/api/ready")
    stack.db.resume()
    assert ready.status_code == 503 and ready.json()["database"] == "unavailable"


def test_a_row_lock_makes_cancel_answer_503_within_the_lock_timeout(stack):
    run = _launch(stack)
    with stack.direct.connect() as other:  # another session holds the run's row
        other.execute(sa.text("SELECT id FROM runs WHERE id = :id FOR UPDATE"), {"id": run["id"]})
        # The lock is held until the answer came: only the lock timeout could end the wait.
        response = stack.client.post(f"/api/runs/{run['id']}/cancel")
        other.rollback()
    _assert_503(response, mentions="busy")
    assert stack.client.post(f"/api/runs/{run['id']}/cancel").json()["status"] == "cancelled"


def test_a_table_lock_makes_pages_answer_503_within_the_lock_timeout(stack):
    run = _launch(stack)
    with stack.direct.connect() as other:
        other.execute(sa.text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
        # Held until both answers came: only the lock timeout could end their waits.
        api = stack.client.get(f"/api/runs/{run['id']}")
        page = stack.client.get(f"/runs/{run['id']}")
        other.rollback()
    _assert_503(api, mentions="busy")
    assert page.status_code == 503 and "Service unavailable" in page.text
