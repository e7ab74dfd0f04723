"""What cancel and re-queue answer for a run in every status, alone and in bulk; a hand-back
that honours a pending cancel leaves a run that re-queues; a run with a cancel pending does
not count against the queue limit. On SQLite and PostgreSQL + Redis."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from jobspec.status import RunStatus
from store.db import session_scope
from store.runs import attempts
from store.runs.models import Run
from tests.api.test_limits import limits
from tests.web.factories import make_run

PRETRAIN = {"ae01": {"epochs": 1}, "ae02": {"epochs": 1}, "ae03": {"epochs": 1}}


def stopping() -> int:
    """Running with a cancel asked for: it stops at its next batch."""
    run_id = make_run("finetune", "running")
    with session_scope() as session:
        session.get_one(Run, run_id).cancel_requested = True
    return run_id


SETUPS = {
    "queued": lambda: make_run("finetune", "queued"),
    "running": lambda: make_run("finetune", "running"),
    "stopping": stopping,
    **{s.value: (lambda s=s.value: make_run("finetune", s)) for s in RunStatus.finished()},
}

# setup -> (code, status, cancel_requested) for a cancel; (code, what the answer says)
# for a re-queue: the status it queued, or the words of the refusal.
CANCEL = {
    "queued": (200, "cancelled", True),
    "running": (200, "running", True),
    "stopping": (200, "running", True),
    "succeeded": (422, "succeeded already", None),
    "failed": (422, "failed already", None),
    "cancelled": (422, "cancelled already", None),
}
REQUEUE = {
    "queued": (422, "this is queued"),
    "running": (422, "this is running"),
    "stopping": (422, "re-queue it once stopped"),
    "succeeded": (422, "this is succeeded"),
    "failed": (200, "queued"),
    "cancelled": (200, "queued"),
}


@pytest.mark.parametrize("setup", list(SETUPS))
def test_cancel_answers_by_status_alone_and_in_bulk(client, setup):
    code, status, cancel_requested = CANCEL[setup]
    one, many = SETUPS[setup](), SETUPS[setup]()
    answer = client.post(f"/api/runs/{one}/cancel")
    bulk = client.post("/api/runs/bulk", json={"action": "cancel", "ids": [many]}).json()
    result = bulk["results"][0]
    if code == 200:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["status"], body["cancel_requested"]) == (status, cancel_requested)
        assert (result["ok"], result["status"]) == (True, status)
    else:
        assert answer.status_code == 422, answer.text
        assert status in answer.json()["detail"][0]["msg"]
        assert not result["ok"] and status in result["error"]
    for run_id in (one, many):
        run = client.get(f"/api/runs/{run_id}").json()
        assert not (run["status"] == "queued" and run["cancel_requested"])


@pytest.mark.parametrize("setup", list(SETUPS))
def test_requeue_answers_by_status(client, setup):
    code, said = REQUEUE[setup]
    run_id = SETUPS[setup]()
    before = client.get(f"/api/runs/{run_id}").json()
    answer = client.post(f"/api/runs/{run_id}/requeue")
    assert answer.status_code == code, answer.text
    if code == 200:
        assert (answer.json()["status"], answer.json()["cancel_requested"]) == (said, False)
    else:
        assert said in answer.json()["detail"][0]["msg"]
        after = client.get(f"/api/runs/{run_id}").json()
        assert (after["status"], after["cancel_requested"]) == (
            before["status"],
            before["cancel_requested"],
        )


def test_a_cancel_during_a_hand_back_ends_cancelled_and_re_queues(client):
    run_id = make_run("finetune", "running")
    assert client.post(f"/api/runs/{run_id}/cancel").json()["status"] == "running"
    with session_scope() as session:  # the worker, told to stop, hands the run back
        attempts.hand_back(session=session, run_id=run_id, attempt=1, reason="SIGTERM")
    run = client.get(f"/api/runs/{run_id}").json()
    assert (run["status"], run["cancel_requested"]) == ("cancelled", True)
    tries = client.get(f"/api/runs/{run_id}/attempts").json()
    assert [t["outcome"] for t in tries] == ["cancelled"]
    again = client.post(f"/api/runs/{run_id}/requeue")
    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["cancel_requested"]) == ("queued", False)


def test_a_run_with_a_cancel_pending_leaves_room_in_the_queue(client):
    run_id = make_run("finetune", "running")
    with session_scope() as session:
        held = session.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.status.in_(RunStatus.active()), Run.cancel_requested.is_(False))
        )
    launch = {"kind": "pretrain", "dataset": "demo-tiny", "params": PRETRAIN}
    with limits(max_queued_runs=held):
        full = client.post("/api/runs", json=launch)
        assert full.status_code == 422 and "STACKLAB_MAX_QUEUED_RUNS" in full.text
        assert client.post(f"/api/runs/{run_id}/cancel").json()["cancel_requested"] is True
        answer = client.post("/api/runs", json=launch)
        assert answer.status_code == 201, answer.text
        client.post(f"/api/runs/{answer.json()[0]['id']}/cancel")  # leave the queue as it was
