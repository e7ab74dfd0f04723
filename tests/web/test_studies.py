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
from tests.web.factories import make_group, make_pruned_study, make_run

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
    assert "needs at least 2 finished trials" in data["missing"]["importances"]
    assert "history" in data["figures"]
    page = client.get(f"/studies/{run_id}").text
    assert "needs at least 2 finished trials" in page


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


# --- issue 22 item 10: every empty panel says why, labelled and pruned intermediate values,
# a trial's detail, the study name typed kept ---

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from backend.studies import service as studies_service  # noqa: E402

STATES = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}


def _memory_study(trials: list[tuple[int, str, float, str]]) -> optuna.Study:
    """An in-memory study of (kernel size, optimizer, value, state) trials, 3 epochs each
    (a pruned one stops after 2)."""
    study = optuna.create_study(direction="minimize")
    for kernel_size, optimizer, value, state in trials:
        curve = (
            {1: value + 0.2, 2: value}
            if state == "pruned"
            else {1: value + 0.2, 2: value + 0.05, 3: value}
        )
        study.add_trial(
            optuna.trial.create_trial(
                params={"kernel_size": kernel_size, "optimizer": optimizer},
                distributions=DISTRIBUTIONS,
                value=value if state == "complete" else None,
                state=STATES[state],
                intermediate_values=curve,
            )
        )
    return study


TRIAL = st.tuples(
    st.sampled_from([3, 5, 7]),
    st.sampled_from(["sgd", "adam", "rmsprop"]),
    st.floats(0.01, 2.0),
    st.sampled_from(["complete", "pruned"]),
)


@settings(max_examples=25, deadline=None)
@given(trials=st.lists(TRIAL, max_size=6))
def test_every_panel_has_a_figure_or_says_why_it_is_empty(trials):
    figs, missing = studies_service.figures(_memory_study(trials))
    assert set(figs) | set(missing) == set(studies_service.PLOTS)
    assert not set(figs) & set(missing)
    assert all(text.strip() for text in missing.values())
    done = [t for t in trials if t[3] == "complete"]
    moving = sum(len({t[i] for t in done}) > 1 for i in (0, 1))
    if "contour" in figs:
        assert len(done) >= 3 and moving == 2
    elif done:
        assert "needs at least 3 finished trials over 2+ parameters" in missing["contour"]
    if "importances" not in figs and done:
        assert "needs at least 2 finished trials" in missing["importances"]
    assert ("intermediate" in figs) == bool(trials)


def test_contour_with_too_few_trials_or_one_parameter_says_so():
    two = _memory_study([(3, "adam", 0.3, "complete"), (5, "sgd", 0.2, "complete")])
    _, missing = studies_service.figures(two)
    assert missing["contour"].startswith(
        "Contour needs at least 3 finished trials over 2+ parameters that take different values"
    )
    assert "2 finished so far" in missing["contour"]
    one_param = _memory_study(
        [(k, "adam", v, "complete") for k, v in ((3, 0.3), (5, 0.2), (7, 0.1))]
    )
    figs, missing = studies_service.figures(one_param)
    assert "contour" not in figs and "1 parameter varying (kernel_size)" in missing["contour"]
    assert "importances" in figs and "slice" in figs


def test_intermediate_lines_are_named_by_trial_and_a_pruned_value_is_marked():
    study = _memory_study([(3, "adam", 0.3, "complete"), (5, "sgd", 0.9, "pruned")])
    fig = studies_service.figures(study)[0]["intermediate"]
    lines = [t for t in fig["data"] if t["mode"] == "lines+markers"]
    assert [t["name"] for t in lines] == ["trial 0", "trial 1 (pruned)"]
    assert all(f"trial {t['meta']['trial']}" in t["hovertemplate"] for t in lines)
    assert fig["layout"]["showlegend"] is True
    assert lines[1]["line"]["dash"] == "dot" and "dash" not in lines[0]["line"]
    [mark] = [t for t in fig["data"] if t["mode"] == "markers+text"]
    assert mark["text"] == ["pruned"] and mark["x"] == [2] and mark["y"] == [0.9]
    assert mark["meta"] == {"trial": 1, "state": "pruned", "pruned_at": 2}
    assert "not a final one" in mark["hovertemplate"]
    assert mark["marker"]["color"] == lines[1]["line"]["color"]


def test_trials_carry_their_epochs_and_a_pruned_value_reads_as_pruned(client):
    run_id = make_pruned_study()
    data = client.get(f"/api/studies/{run_id}").json()
    pruned = data["trials"][1]
    assert pruned["state"] == "pruned" and pruned["intermediate"] == [[1, 0.9], [2, 0.8]]
    assert pruned["pruned_at"] == 2 and data["trials"][0]["pruned_at"] is None
    assert data["trials"][0]["intermediate"] == [[1, 0.5], [2, 0.35], [3, 0.3]]
    assert data["best"]["number"] == 0  # a pruned trial's value is never the best
    html = client.get(f"/studies/{run_id}").text
    row = html[html.index('<tr data-trial="1"') :]
    row = row[: row.index("</tr>")]
    assert "pruned at epoch 2" in row and 'class="pruned-value"' in row
    assert 'href="?trial=1#trial-detail"' in row
    assert 'id="trial-detail"' in html and "/static/js/study.js" in html
    assert data["plot_titles"]["contour"] == "Contour"
    assert "Intermediate values" in html


def _launch_tune(client, name: str | None) -> dict:
    params = {"n_trials": 1, "epochs": 1, "kernel_sizes": [3], "optimizers": ["adam"]}
    if name is not None:
        params["study_name"] = name
    response = client.post(
        "/api/runs", json={"kind": "tune", "dataset": "demo-tiny", "params": params}
    )
    assert response.status_code == 201, response.text
    return response.json()[0]


def test_the_study_name_typed_is_the_studys_name(client):
    name = f"kernel sweep {uuid.uuid4().hex[:6]}"
    run = _launch_tune(client, name)
    assert run["study_name"] == name and run["params"]["study_name"] == name
    assert not run.get("warnings")
    page = client.get(f"/studies/{run['id']}").text
    assert f'<span class="mono">{name}</span>' in page
    again = _launch_tune(client, name)  # taken: kept, with the run's number, and said
    assert again["study_name"] == f"{name} (run {again['id']})"
    assert again["params"]["study_name"] == again["study_name"]
    assert any(name in w and f"run #{run['id']}" in w for w in again["warnings"])
    # The field's default, never typed: a fresh name without a warning.
    first, second = _launch_tune(client, None), _launch_tune(client, None)
    assert first["study_name"] != second["study_name"]
    assert not second.get("warnings")
