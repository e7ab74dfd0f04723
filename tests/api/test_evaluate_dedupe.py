"""Idempotent actions queue their work once while it is queued: fifty "Evaluate now" at once
send one evaluation (the others are answered with it), the mark clears when the evaluation
ends, fails, cannot be sent or is taken for lost; fifty re-queues at once send one run.
(The worker's side of an evaluation: tests/queue/test_evaluate_now.py.)"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from store import queue
from store.db import session_scope
from store.runs import evaluations
from store.runs.models import Run
from store.timeutil import utcnow
from tests.web.factories import make_run

CLICKS = 50
TRAINING = {"epochs_run": 1, "epochs_planned": 50, "best_epoch": 1, "cancelled": True}
WEIGHTS = {"classifier.keras": b"keras", "classifier.weights.h5": b"h5"}


def cancelled_finetune() -> int:
    return make_run(
        "finetune",
        "cancelled",
        metrics={"finetune/loss": [1.2], "finetune/val_loss": [1.1]},
        result={"training": TRAINING},
        artifacts=WEIGHTS,
    )


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, int]]:
    """Every task the web sends through the queue contract (sent for real, then noted)."""
    noted: list[tuple[str, int]] = []
    lock = threading.Lock()
    real = queue.enqueue

    def spy(kind: str, run_id: int) -> str:
        task_id = real(kind, run_id)
        with lock:
            noted.append((kind, run_id))
        return task_id

    monkeypatch.setattr(queue, "enqueue", spy)
    return noted


def at_once(count: int, call):
    """`call()` from `count` threads released together; their answers."""
    barrier = threading.Barrier(count)

    def one(_):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_fifty_clicks_at_once_queue_one_evaluation_until_it_ends(client, sent):
    run_id = cancelled_finetune()
    answers = at_once(CLICKS, lambda: client.post(f"/api/runs/{run_id}/evaluate"))
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
    bodies = [a.json() for a in answers]
    first = [b for b in bodies if not b["already_queued"]]
    assert len(first) == 1 and first[0]["task_id"]
    assert sent == [(queue.EVALUATE, run_id)]
    assert all(b["queued"] for b in bodies)

    # a click after the others: answered with the queued task, nothing sent
    again = client.post(f"/api/runs/{run_id}/evaluate")
    assert again.status_code == 202 and again.json()["already_queued"] is True
    assert again.json()["task_id"] == first[0]["task_id"] and len(sent) == 1
    state = client.get(f"/api/runs/{run_id}/partial").json()
    assert state["evaluating"]["task_id"] == first[0]["task_id"]
    assert state["can_evaluate"] is False
    assert "Already evaluating on the test set" in client.get(f"/runs/{run_id}").text

    # the worker records a failure: the button is free again, and one more click queues one
    with session_scope() as session:
        evaluations.store_failure(session=session, run_id=run_id, error="OSError: disk full")
    state = client.get(f"/api/runs/{run_id}/partial").json()
    assert state["evaluating"] is None and state["can_evaluate"] is True
    retried = client.post(f"/api/runs/{run_id}/evaluate")
    assert retried.status_code == 202 and retried.json()["already_queued"] is False
    assert len(sent) == 2

    # the worker stores the evaluation: the mark clears and the run answers with it
    with session_scope() as session:
        evaluation = {"accuracy": 0.5, "model_epoch": 1}
        stored = evaluations.store_evaluation(
            session=session, run_id=run_id, evaluation=evaluation, files=[]
        )
        assert stored is True
    with session_scope() as session:
        run = session.get(Run, run_id)
        assert run.evaluation_queued_at is None and run.evaluation_task_id is None
    done = client.post(f"/api/runs/{run_id}/evaluate")
    assert done.status_code == 200 and done.json()["evaluation"]["partial"] is True
    assert len(sent) == 2


def test_a_skipped_evaluation_frees_the_mark(client, sent):
    run_id = cancelled_finetune()
    assert client.post(f"/api/runs/{run_id}/evaluate").json()["already_queued"] is False
    with session_scope() as session:  # a copy of the message that finds it evaluated already
        run = session.get(Run, run_id)
        run.result = {**run.result, "evaluation": {"accuracy": 0.5}}
    with session_scope() as session:
        stored = evaluations.store_evaluation(
            session=session, run_id=run_id, evaluation={"accuracy": 0.6}, files=[]
        )
        assert stored is False
    with session_scope() as session:
        assert session.get(Run, run_id).evaluation_queued_at is None


def test_a_lost_evaluation_may_be_asked_for_again(client, sent):
    """A mark older than STACKLAB_EVALUATION_LOST_AFTER_SECONDS (its worker killed, its
    message dropped) does not hold the button forever."""
    run_id = cancelled_finetune()
    assert client.post(f"/api/runs/{run_id}/evaluate").json()["already_queued"] is False
    assert client.post(f"/api/runs/{run_id}/evaluate").json()["already_queued"] is True
    with session_scope() as session:  # an hour and a minute ago
        session.get(Run, run_id).evaluation_queued_at = utcnow() - timedelta(seconds=3660)
    assert client.get(f"/api/runs/{run_id}/partial").json()["can_evaluate"] is True
    assert client.post(f"/api/runs/{run_id}/evaluate").json()["already_queued"] is False
    assert sent == [(queue.EVALUATE, run_id)] * 2


def test_an_evaluation_that_could_not_be_sent_leaves_no_mark(client, sent, monkeypatch):
    run_id = cancelled_finetune()

    def down(kind: str, run_id: int) -> str:
        raise queue.QueueUnavailable("the test's broker")

    with monkeypatch.context() as patch:
        patch.setattr(queue, "enqueue", down)
        assert client.post(f"/api/runs/{run_id}/evaluate").status_code == 503
    with session_scope() as session:
        assert session.get(Run, run_id).evaluation_queued_at is None
    assert client.post(f"/api/runs/{run_id}/evaluate").json()["already_queued"] is False
    assert len(sent) == 1


def test_fifty_requeues_at_once_send_the_run_once(client, sent):
    run_id = make_run("finetune", "cancelled", params={"encoder": "scratch", "epochs": 2})
    answers = at_once(CLICKS, lambda: client.post(f"/api/runs/{run_id}/requeue"))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [422] * (CLICKS - 1), [a.text for a in answers if a.status_code > 422]
    refused = next(a for a in answers if a.status_code == 422).json()["detail"][0]
    assert "queued" in refused["msg"]
    assert sent == [("finetune", run_id)]
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "queued"
