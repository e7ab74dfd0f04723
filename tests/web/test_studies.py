"""The study page of a tune run: trials, best trial, Optuna's plots, the pretrain button."""

from __future__ import annotations

import uuid

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from store.db import session_scope
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.settings import get_settings
from tests.web.factories import make_group, make_run

DISTRIBUTIONS = {
    "kernel_size": CategoricalDistribution([3, 5, 7]),
    "optimizer": CategoricalDistribution(["sgd", "adam", "rmsprop"]),
}
TRIALS = [(3, "adam", 0.30), (5, "sgd", 0.12), (7, "rmsprop", 0.50), (3, "sgd", 0.20)]


def _tune_study(trials: list[tuple[int, str, float]], *, parts: int = 1) -> list[int]:
    """A finished Optuna study in the app's database and the tune run(s) that ran it."""
    study_name = f"test-study-{uuid.uuid4().hex[:8]}"
    storage = optuna.storages.RDBStorage(get_settings().sqlalchemy_url)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="minimize")
    group_id = make_group("tune", "parallel tune") if parts > 1 else None
    run_ids = [
        make_run(
            "tune",
            params={"stage": "ae02", "study_name": study_name},
            name=f"tune (worker {part + 1}/{parts})",
            group_id=group_id,
            result={"study_name": study_name},
        )
        for part in range(parts)
    ]
    for number, (kernel_size, optimizer, value) in enumerate(trials):
        params = {"kernel_size": kernel_size, "optimizer": optimizer}
        curve = {1: value + 0.2, 2: value + 0.05, 3: value}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=DISTRIBUTIONS,
                value=value,
                intermediate_values=curve,
            )
        )
        with session_scope() as session:
            metrics_service.record_trial(
                session=session,
                run_id=run_ids[number % parts],
                trial={
                    "number": number,
                    "params": params,
                    "state": "complete",
                    "value": value,
                    "intermediate": curve,
                    "seconds": 1.5,
                },
            )
    storage.engine.dispose()
    with session_scope() as session:
        for run_id in run_ids:
            runs_service.get_run(session, run_id).study_name = study_name
    return run_ids


@pytest.fixture(scope="module")
def parallel_study(client):
    return _tune_study(TRIALS, parts=2)


def test_study_json_lists_every_worker_part_with_best_trial_and_figures(client, parallel_study):
    first, second = parallel_study
    data = client.get(f"/api/studies/{second}").json()
    assert [r["id"] for r in data["runs"]] == [first, second]
    assert [t["number"] for t in data["trials"]] == [0, 1, 2, 3]
    assert {t["run_id"] for t in data["trials"]} == {first, second}
    assert data["trials"][0]["params"] == {"kernel_size": 3, "optimizer": "adam"}
    assert data["best"]["number"] == 1
    assert data["best"]["params"] == {"kernel_size": 5, "optimizer": "sgd", "learning_rate": 0.01}
    assert set(data["figures"]) == {"history", "importances", "slice", "contour", "intermediate"}
    assert all(fig["data"] for fig in data["figures"].values())
    assert data["missing"] == {}
    assert data["live"] is False


def test_study_json_skips_figures_while_the_study_is_unchanged(client, parallel_study):
    run_id = parallel_study[0]
    version = client.get(f"/api/studies/{run_id}").json()["version"]
    again = client.get(f"/api/studies/{run_id}", params={"version": version}).json()
    assert again["figures"] is None
    assert len(again["trials"]) == len(TRIALS)


def test_pretrain_button_request_queues_a_pretrain_with_the_best_stage_settings(
    client,
    parallel_study,
):
    request = client.get(f"/api/studies/{parallel_study[0]}").json()["pretrain_request"]
    assert request["kind"] == "pretrain"
    assert request["source_run_id"] == parallel_study[0]
    best = {"kernel_size": 5, "optimizer": "sgd", "learning_rate": 0.01}
    assert best.items() <= request["params"]["ae02"].items()
    response = client.post("/api/runs", json=request)
    assert response.status_code == 201, response.text
    run = response.json()[0]
    assert run["kind"] == "pretrain"
    assert run["params"]["ae02"]["kernel_size"] == 5
    assert run["params"]["ae02"]["optimizer"] == "sgd"
    assert run["params"]["ae01"]["kernel_size"] == 3  # other stages keep their defaults
    assert run["source_run_id"] == parallel_study[0]


def test_study_page_renders_trials_and_plots_locally(client, parallel_study):
    page = client.get(f"/studies/{parallel_study[0]}")
    assert page.status_code == 200
    html = page.text
    assert "Pretrain with these settings" in html
    assert "tune (worker 2/2)" in html
    assert 'src="/vendor/plotly.min.js?v=' in html and "cdn" not in html.lower()
    assert 'id="study-data"' in html and "/static/js/study.js" in html


def test_single_completed_trial_explains_missing_importances(client):
    (run_id,) = _tune_study(TRIALS[:1])
    data = client.get(f"/api/studies/{run_id}").json()
    assert "importances" not in data["figures"]
    assert "at least 2 completed trials" in data["missing"]["importances"]
    assert "history" in data["figures"]
    page = client.get(f"/studies/{run_id}").text
    assert "at least 2 completed trials" in page


def test_tune_run_without_a_study_yet_shows_no_figures(client):
    run_id = make_run("tune", status="queued")
    data = client.get(f"/api/studies/{run_id}").json()
    assert data["trials"] == [] and data["best"] is None and data["live"] is True
    assert data["figures"] == {} and "not started" in data["missing"]["history"]
    assert data["pretrain_request"] is None


def test_unknown_and_non_tune_runs_are_404(client):
    assert client.get("/api/studies/999999").status_code == 404
    page = client.get("/studies/999999")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    pretrain = make_run("pretrain")
    response = client.get(f"/api/studies/{pretrain}")
    assert response.status_code == 404
    assert "pretrain run" in response.json()["detail"]
