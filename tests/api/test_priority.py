"""Priorities through the API: on launches, studies, clones and re-queues; changed while
queued (409 once started); bounded per token (422 naming the field, the ceiling and the
setting, nothing stored); a set-aside decided as soon as the change commits. Both stacks."""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobspec.status import RunStatus
from store.db import session_scope
from store.runs.models import Run
from store.settings import get_settings
from tests.web.factories import make_run, make_worker, settle_queue

FINETUNE = {"encoder": "scratch", "epochs": 1}


@contextlib.contextmanager
def env(**values: str):
    """Run with some STACKLAB_* settings changed."""
    saved = {key: os.environ.get(f"STACKLAB_{key.upper()}") for key in values}
    os.environ.update({f"STACKLAB_{k.upper()}": v for k, v in values.items()})
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(f"STACKLAB_{key.upper()}", None)
            else:
                os.environ[f"STACKLAB_{key.upper()}"] = value
        get_settings.cache_clear()


@pytest.fixture(autouse=True)
def quiet_queue(client):
    """Each test starts and ends with none of this module's runs waiting or running (the
    queue limits count them; a set-aside picks among running runs) and no worker."""
    settle_queue()
    yield
    settle_queue()


def _launch(client, headers=None, **extra):
    body = {"kind": "finetune", "dataset": "demo-tiny", "params": FINETUNE, **extra}
    return client.post("/api/runs", json=body, headers=headers or {})


def _count() -> int:
    with session_scope() as session:
        return session.query(Run).count()


def _refused(response, field: str, *words: str) -> str:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"][-1] == field, detail
    for word in words:
        assert word in detail["msg"], detail
    return detail["msg"]


def test_a_launch_stores_its_priority_and_what_it_needs(client):
    plain = _launch(client).json()[0]
    assert plain["priority"] == 0 and plain["needs_gpu"] is False
    urgent = _launch(client, priority=7, needs_gpu=True, min_gpu_memory_mb=16000)
    assert urgent.status_code == 201, urgent.text
    run = client.get(f"/api/runs/{urgent.json()[0]['id']}").json()
    assert (run["priority"], run["needs_gpu"], run["min_gpu_memory_mb"]) == (7, True, 16000)
    assert _launch(client, priority=-5).json()[0]["priority"] == -5


def test_the_open_sites_ceiling_refuses_one_more_naming_the_setting_and_storing_nothing(client):
    with env(max_priority="3"):
        assert _launch(client, priority=3).status_code == 201
        before = _count()
        msg = _refused(_launch(client, priority=4), "priority", "STACKLAB_MAX_PRIORITY", "3")
        assert "open site" in msg
        assert _count() == before


@pytest.mark.parametrize(
    "field, value",
    [
        ("priority", "high"),
        ("priority", 1.5),
        ("priority", True),
        ("priority", "5"),
        ("priority", 1001),
        ("priority", -1001),
        ("priority", 2**70),
        ("priority", None),
        ("min_gpu_memory_mb", 0),
        ("min_gpu_memory_mb", -1),
        ("min_gpu_memory_mb", 10**12),
        ("min_gpu_memory_mb", "lots"),
        ("needs_gpu", "yes"),
        ("needs_gpu", 2),
    ],
)
def test_bad_values_are_a_422_naming_the_field(client, field, value):
    before = _count()
    response = _launch(client, **{field: value})
    assert response.status_code == 422, response.text
    assert any(d["loc"][-1] == field for d in response.json()["detail"]), response.text
    assert _count() == before


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    value=st.one_of(
        st.integers(min_value=-(2**40), max_value=2**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.booleans(),
        st.none(),
    )
)
def test_any_priority_is_stored_as_given_or_refused_never_a_500(client, value):
    response = _launch(client, priority=value)
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        assert type(value) is int and -1000 <= value <= get_settings().max_priority
        assert response.json()[0]["priority"] == value
        client.post(f"/api/runs/{response.json()[0]['id']}/cancel")


def test_each_token_has_its_own_ceiling(client):
    tokens = json.dumps({"ana": "ana-token-1", "ben": "ben-token-2"})
    with env(tokens=tokens, priority_limits=json.dumps({"ana": 50}), max_priority="5"):
        from fastapi.testclient import TestClient

        from backend.main import create_app

        with TestClient(create_app()) as guarded:
            ana = {"Authorization": "Bearer ana-token-1"}
            ben = {"Authorization": "Bearer ben-token-2"}
            assert _launch(guarded, ana, priority=50).status_code == 201
            _refused(_launch(guarded, ana, priority=51), "priority", "STACKLAB_PRIORITY_LIMITS")
            assert _launch(guarded, ben, priority=5).status_code == 201
            before = _count()
            _refused(_launch(guarded, ben, priority=6), "priority", "STACKLAB_MAX_PRIORITY", "5")
            study = {"dataset": "demo-tiny", "params": FINETUNE, "seeds": [0, 1], "priority": 6}
            _refused(guarded.post("/api/augmentation-studies", json=study, headers=ben), "priority")
            assert _count() == before
            queued = _launch(guarded, ben).json()[0]["id"]
            patch = guarded.patch(f"/api/runs/{queued}", json={"priority": 50}, headers=ben)
            _refused(patch, "priority", "STACKLAB_MAX_PRIORITY")
            patch = guarded.patch(f"/api/runs/{queued}", json={"priority": 50}, headers=ana)
            assert patch.status_code == 200 and patch.json()["priority"] == 50


def test_priority_changes_while_queued_and_409_once_started(client):
    queued = _launch(client).json()[0]["id"]
    edited = client.patch(f"/api/runs/{queued}", json={"priority": 9, "notes": "urgent"})
    assert edited.status_code == 200, edited.text
    assert edited.json()["priority"] == 9 and edited.json()["notes"] == "urgent"
    running = make_run("finetune", RunStatus.RUNNING, name="already-going")
    refused = client.patch(f"/api/runs/{running}", json={"priority": 9, "notes": "lost?"})
    assert refused.status_code == 409, refused.text
    assert "only while the run is queued" in refused.json()["detail"]
    after = client.get(f"/api/runs/{running}").json()
    assert after["priority"] == 0 and after["notes"] is None  # nothing half-stored
    assert client.patch(f"/api/runs/{running}", json={"notes": "fine"}).status_code == 200
    assert client.patch("/api/runs/987654", json={"priority": 1}).status_code == 404
    with env(max_priority="3"):
        _refused(
            client.patch(f"/api/runs/{queued}", json={"priority": 4, "notes": "x"}), "priority"
        )
    assert client.get(f"/api/runs/{queued}").json()["notes"] == "urgent"


def test_clone_keeps_the_priority_unless_given(client):
    source = _launch(client, priority=4, needs_gpu=True).json()[0]["id"]
    kept = client.post(f"/api/runs/{source}/clone", json={})
    assert kept.status_code == 201, kept.text
    assert kept.json()["priority"] == 4 and kept.json()["needs_gpu"] is True
    given = client.post(f"/api/runs/{source}/clone", json={"priority": -2, "needs_gpu": False})
    assert given.json()["priority"] == -2 and given.json()["needs_gpu"] is False
    with env(max_priority="3"):
        before = _count()
        _refused(client.post(f"/api/runs/{source}/clone", json={}), "priority", "3")
        assert _count() == before


def test_requeue_keeps_the_priority_unless_given_in_the_body_or_the_query(client):
    run_id = _launch(client, priority=6).json()[0]["id"]

    def stop_and_requeue(**kwargs):
        assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200
        return client.post(f"/api/runs/{run_id}/requeue", **kwargs)

    kept = stop_and_requeue()
    assert kept.status_code == 200 and kept.json()["priority"] == 6
    assert stop_and_requeue(json={"priority": 2}).json()["priority"] == 2
    assert stop_and_requeue(params={"priority": 8}).json()["priority"] == 8
    with env(max_priority="3"):
        _refused(stop_and_requeue(json={"priority": 4}), "priority", "STACKLAB_MAX_PRIORITY")
        assert client.get(f"/api/runs/{run_id}").json()["status"] == RunStatus.CANCELLED
    bad = client.post(f"/api/runs/{run_id}/requeue", params={"priority": "x"})
    assert bad.status_code == 422


def test_a_launch_of_higher_priority_sets_a_running_run_aside_at_once(client):
    low = make_run("finetune", RunStatus.RUNNING, name="long-and-low")
    make_worker("busy-worker", current_run_id=low)
    with env(preempt_after_seconds="0"):
        urgent = _launch(client, priority=10).json()[0]["id"]
        assert client.get(f"/api/runs/{low}").json()["set_aside_for"] == urgent
        # and a priority raised while queued decides it at once too
        settle_queue()
        low = make_run("finetune", RunStatus.RUNNING, name="long-and-low-2")
        make_worker("busy-worker", current_run_id=low)
        waiting = _launch(client).json()[0]["id"]
        assert client.get(f"/api/runs/{low}").json()["set_aside_for"] is None
        assert client.patch(f"/api/runs/{waiting}", json={"priority": 3}).status_code == 200
        assert client.get(f"/api/runs/{low}").json()["set_aside_for"] == waiting


def test_every_run_of_a_study_gets_its_priority(client):
    study = {"dataset": "demo-tiny", "params": FINETUNE, "seeds": [0, 1], "priority": 3}
    made = client.post("/api/augmentation-studies", json=study)
    assert made.status_code == 201, made.text
    runs = client.get("/api/runs", params={"group_id": made.json()["group_id"]}).json()["items"]
    assert len(runs) == 4 and {run["priority"] for run in runs} == {3}
    with env(max_priority="2"):
        before = _count()
        _refused(client.post("/api/augmentation-studies", json=study), "priority", "2")
        assert _count() == before
