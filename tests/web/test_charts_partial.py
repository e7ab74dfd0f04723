"""Runs stopped mid-training: the partial badge (run page and compare), the warning on their
weights, and POST /api/runs/{id}/evaluate's validation (the worker side: tests/queue)."""

from __future__ import annotations

import pytest

from store.db import session_scope
from store.runs.models import Run
from tests.web.factories import finetune_result, make_run

CANCELLED_TRAINING = {
    "epochs_run": 1,
    "epochs_planned": 50,
    "best_epoch": 1,
    "restored_best_weights": True,
    "cancelled": True,
    "monitor": "val_loss",
    "stopped_early": False,
}
WEIGHTS = {"classifier.keras": b"keras", "classifier.weights.h5": b"h5"}


def cancelled_finetune(**fields) -> int:
    return make_run(
        "finetune",
        "cancelled",
        metrics={"finetune/loss": [1.2], "finetune/val_loss": [1.1]},
        result={"training": CANCELLED_TRAINING},
        **{"artifacts": WEIGHTS, **fields},
    )


@pytest.fixture(scope="module")
def partial_run(client):
    return cancelled_finetune(name="stopped early by me")


def test_a_run_cancelled_in_epoch_1_is_marked_partial_with_a_warning_on_its_weights(
    client, partial_run
):
    page = client.get(f"/runs/{partial_run}").text
    assert 'class="badge partial" id="run-partial"' in page
    assert 'id="run-partial" title="cancelled in finetune at epoch 1 of 50"' in page
    assert "partial model from epoch 1 of 50 (finetune training was cancelled)" in page
    assert 'class="button partial"' in page and page.count("⚠ partial model from epoch 1") == 2
    state = client.get(f"/api/runs/{partial_run}/partial").json()
    assert state["partial"]["weights_epoch"] == 1 and state["partial"]["epochs_planned"] == 50
    assert state["can_evaluate"] is True and state["evaluation"] is None
    assert set(state["download_notes"]) == set(WEIGHTS)


def test_finished_and_never_started_runs_are_not_partial(client):
    done = make_run("finetune", metrics={"finetune/loss": [1.0]}, result=finetune_result())
    early = make_run("finetune", "cancelled")  # cancelled while queued: nothing kept
    for run_id in (done, early):
        assert client.get(f"/api/runs/{run_id}/partial").json()["partial"] is None
        assert 'id="run-partial" title="" hidden' in client.get(f"/runs/{run_id}").text


def test_a_failed_pretrain_is_partial_in_the_stage_it_failed_in(client):
    run_id = make_run(
        "pretrain",
        "failed",
        error="boom",
        metrics={"ae01/loss": [0.3, 0.2], "ae02/loss": [0.5]},
        params={"ae01": {"epochs": 2}, "ae02": {"epochs": 4}},
        artifacts={"ae01.weights.h5": b"h5"},
    )
    partial = client.get(f"/api/runs/{run_id}/partial").json()["partial"]
    assert partial["text"] == "failed in ae02 at epoch 1 of 4 (ae01 complete)"
    assert partial["complete_stages"] == ["ae01"]
    # AE01 finished: its weights carry no warning.
    assert client.get(f"/api/runs/{run_id}/partial").json()["download_notes"] == {}


def test_compare_marks_partial_runs_and_partial_evaluations(client, partial_run):
    evaluated = cancelled_finetune()
    with session_scope() as session:
        run = session.get(Run, evaluated)
        run.result = {
            **run.result,
            "evaluation": {**finetune_result()["evaluation"], "partial": True},
        }
    other = make_run("finetune", result=finetune_result())
    data = client.get(f"/api/compare?ids={partial_run},{evaluated},{other}").json()
    marks = {run["id"]: run["partial"] for run in data["runs"]}
    assert marks[other] is None and marks[partial_run]["epoch"] == 1
    accuracy = next(row for row in data["tests"] if row["key"] == "accuracy")
    assert accuracy["cells"][str(evaluated)]["partial"] is True
    assert accuracy["cells"][str(other)]["partial"] is False
    page = client.get(f"/compare?ids={partial_run},{other}").text
    assert f'data-partial-of="{partial_run}" title="cancelled in finetune' in page


def test_evaluate_now_is_refused_with_the_reason(client, partial_run):
    assert client.post("/api/runs/987654/evaluate").status_code == 404
    cases = {
        make_run("finetune", result=finetune_result()): "status",  # finished: evaluated already
        make_run("finetune", "running"): "status",
        make_run("pretrain", "cancelled", metrics={"ae01/loss": [0.3]}): "kind",
        cancelled_finetune(artifacts={}): "classifier",  # stopped before saving a model
    }
    for run_id, field in cases.items():
        response = client.post(f"/api/runs/{run_id}/evaluate")
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"][-1] == field and str(run_id) in detail["msg"], detail


def test_evaluate_now_queues_once_and_answers_an_evaluated_run_as_it_is(client):
    run_id = cancelled_finetune()
    response = client.post(f"/api/runs/{run_id}/evaluate")
    assert response.status_code == 202, response.text
    assert response.json()["queued"] is True and response.json()["task_id"]
    with session_scope() as session:  # what the worker stores (tests/queue/test_evaluate_now.py)
        run = session.get(Run, run_id)
        evaluation = {"accuracy": 0.5, "partial": True, "model_epoch": 1}
        run.result = {**run.result, "evaluation": evaluation}
    again = client.post(f"/api/runs/{run_id}/evaluate")
    assert again.status_code == 200 and again.json()["queued"] is False
    assert again.json()["evaluation"]["partial"] is True
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "cancelled"
    page = client.get(f"/runs/{run_id}").text
    assert 'id="eval-partial" >partial model from epoch 1</span>' in page
