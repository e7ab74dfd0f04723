"""The web process sends webhooks by itself: its sender thread (started with the app, beside
the upkeep) delivers a finished run's event, and the delivery log shows it without the URL's
path. On SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from jobspec.status import RunStatus
from store.notify.vocabulary import DeliveryState, NotifyEvent
from store.settings import get_settings
from tests.ops.helpers import finish, running_run, settle
from tests.stack import wait_for


@pytest.fixture
def sending_web(app_env, receiver, monkeypatch):
    monkeypatch.setenv("STACKLAB_WEBHOOK_URLS", receiver.url + "/secret-path")
    monkeypatch.setenv("STACKLAB_HEARTBEAT_SECONDS", "0.2")  # the sender's round
    get_settings.cache_clear()
    settle()
    with TestClient(create_app()) as client:
        yield client
    monkeypatch.delenv("STACKLAB_WEBHOOK_URLS")
    monkeypatch.delenv("STACKLAB_HEARTBEAT_SECONDS")
    get_settings.cache_clear()


def test_the_web_delivers_a_finished_runs_event_and_logs_it(sending_web, receiver):
    from store.datasets.models import DatasetRecord
    from store.db import session_scope

    with session_scope() as session:
        dataset = session.query(DatasetRecord.id).filter_by(name="demo-tiny").scalar()
    run_id = running_run(dataset)
    finish(run_id, RunStatus.SUCCEEDED)
    got = receiver.next(timeout=60)
    assert got.path == "/hook/secret-path" and got.json()["run"]["id"] == run_id

    def logged() -> dict | None:
        rows = sending_web.get("/api/ops/webhooks", params={"limit": 5}).json()
        mine = [row for row in rows if row["run_id"] == run_id]
        return mine[0] if mine and mine[0]["state"] == DeliveryState.DELIVERED else None

    row = wait_for(logged, timeout=30, what="the delivery in the log")
    assert row["event"] == NotifyEvent.RUN_SUCCEEDED and row["attempts"] == 1
    assert row["delivery"] == got.headers["X-Stacklab-Delivery"]
    assert "secret-path" not in row["url"] and row["url"].startswith("http://127.0.0.1:")
    assert row["next_attempt_at"] is None and row["last_status"] == 200
