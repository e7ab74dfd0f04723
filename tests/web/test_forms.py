"""The new-run form and launch API: review before launch from a study, every error at once,
quick runs, data-set warnings and the form's own polish (labels, parent -> data set)."""

from __future__ import annotations

import re

import pytest

from store.db import session_scope
from store.runs import launch as launcher
from store.runs.schemas import RunCreate
from tests.web.factories import make_run, make_tune_study

TRAINED = {"trained_stages": ["ae01", "ae02", "ae03"]}
TUNE = {
    "stage": "ae02",
    "epochs": 3,
    "batch_size": 64,
    "bn_momentum": 0.9,
    "validation_fraction": 0.2,
    "seed": 4,
    "max_train_images": 500,
    "steps_per_epoch": 5,
}


def _finished_tune(parent: int | None) -> int:
    """A tune of AE02 on `parent`'s AE01 whose Optuna study's best trial is 5 / sgd."""
    return make_tune_study(
        TUNE, [(3, "adam", 0.3), (5, "sgd", 0.1)], prefix="forms", parent_run_id=parent
    )


@pytest.fixture(scope="module")
def tuned(client):
    parent = make_run(
        "pretrain",
        params={
            "ae01": {"kernel_size": 7, "optimizer": "sgd", "epochs": 6},
            "decoder_output": "sigmoid",
        },
        result=TRAINED,
    )
    return _finished_tune(parent)


def _value(html: str, field: str) -> str:
    found = re.search(rf'id="pretrain-params\.{re.escape(field)}"[^>]*value="([^"]*)"', html)
    assert found, field
    return found.group(1)


def _selected(html: str, field: str) -> str:
    select = re.search(rf'<select id="pretrain-params\.{re.escape(field)}".*?</select>', html, re.S)
    return re.search(r'<option value="([^"]*)" selected>', select.group(0)).group(1)


def test_the_study_page_opens_a_prefilled_form_and_queues_nothing(client, tuned):
    view = client.get(f"/api/studies/{tuned}").json()
    assert view["pretrain_form"] == f"/studies/{tuned}/pretrain"
    assert f'href="/studies/{tuned}/pretrain"' in client.get(f"/studies/{tuned}").text
    before = client.get("/api/runs", params={"limit": 1}).json()["total"]
    html = client.get(view["pretrain_form"]).text
    assert client.get("/api/runs", params={"limit": 1}).json()["total"] == before
    assert 'data-kind="pretrain" novalidate >' in html and "data-review" in html
    assert f'<input type="hidden" name="source_run_id" value="{tuned}">' in html
    # The best trial's settings for the tuned stage, the tune's epochs and batch size.
    assert (_selected(html, "ae02.kernel_size"), _selected(html, "ae02.optimizer")) == ("5", "sgd")
    assert _value(html, "ae02.learning_rate") == "0.01"
    assert (_value(html, "ae02.epochs"), _value(html, "ae02.batch_size")) == ("3", "64")
    assert (_value(html, "ae03.epochs"), _value(html, "ae03.batch_size")) == ("3", "64")
    # AE01 as the pretrain the tune built on trained it.
    assert (_selected(html, "ae01.kernel_size"), _selected(html, "ae01.optimizer")) == ("7", "sgd")
    assert _value(html, "ae01.epochs") == "6" and _selected(html, "decoder_output") == "sigmoid"
    # The tune's own settings where they mean the same in a pretrain.
    assert _value(html, "bn_momentum") == "0.9" and _value(html, "validation_fraction") == "0.2"
    assert _value(html, "seed") == "4" and _value(html, "split_seed") == "4"
    assert _value(html, "max_train_images") == "500" and _value(html, "steps_per_epoch") == "5"
    assert 'value="pretrain from forms-' in html
    assert "the stages before it are as" in html and "pretrain run #" in html


def test_the_reviewed_pretrain_records_the_tune_as_its_source(client, tuned):
    request = client.get(f"/api/studies/{tuned}").json()["pretrain_request"]
    assert request["source_run_id"] == tuned
    created = client.post("/api/runs", json=request)
    assert created.status_code == 201, created.text
    run = client.get(f"/api/runs/{created.json()[0]['id']}").json()
    assert run["source_run_id"] == tuned
    assert run["params"]["ae02"]["kernel_size"] == 5 and run["params"]["bn_momentum"] == 0.9
    page = client.get(f"/runs/{run['id']}").text  # the lineage names the study
    assert "Launched from study" in page and f'href="/studies/{tuned}"' in page
    missing = client.post("/api/runs", json={**request, "source_run_id": 99_999_999})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "source_run_id"]


def test_a_study_without_a_completed_trial_has_no_review_form(client):
    queued = make_run("tune", "queued")
    assert client.get(f"/api/studies/{queued}").json()["pretrain_form"] is None
    assert client.get(f"/studies/{queued}/pretrain").status_code == 404
    assert client.get(f"/studies/{make_run('pretrain')}/pretrain").status_code == 404


def test_every_bad_field_comes_back_in_one_422(client):
    body = {
        "kind": "finetune",
        "dataset": "demo-tiny",
        "params": {"encoder": "scratch", "epochs": 0, "batch_size": -5, "validation_fraction": 1.5},
    }
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [e["loc"] for e in errors] == [
        ["body", "params", "epochs"],
        ["body", "params", "batch_size"],
        ["body", "params", "validation_fraction"],
    ]
    assert all(e["msg"] and e["type"] for e in errors)
    assert response.json()["detail"] == errors[:1]  # older clients read the first one
    html = client.get("/runs/new?kind=finetune").text
    for error in errors:
        assert f'data-field="{".".join(error["loc"][1:])}"' in html


def test_errors_of_every_check_come_together(client):
    body = {"kind": "finetune", "dataset": "no-such-data", "params": {"epochs": 0}}
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422
    fields = [".".join(e["loc"][1:]) for e in response.json()["errors"]]
    assert fields == ["params.epochs", "dataset"]
    # FastAPI's own 422 (the request's shape) carries the same list.
    shape = client.post("/api/runs", json={"kind": "finetune", "dataset": "", "parallel": 0})
    assert shape.status_code == 422
    assert shape.json()["errors"] == shape.json()["detail"] and len(shape.json()["errors"]) == 2


def test_a_quick_run_keeps_its_limits_in_params_and_is_tagged(client):
    params = {
        "encoder": "scratch",
        "validation_fraction": 0.25,
        "max_train_images": 40,
        "steps_per_epoch": 2,
    }
    created = client.post(
        "/api/runs",
        json={"kind": "finetune", "dataset": "demo-tiny", "params": params, "tags": ["mine"]},
    )
    assert created.status_code == 201, created.text
    run = created.json()[0]
    assert run["tags"] == ["mine", "quick"]
    assert run["params"]["max_train_images"] == 40 and run["params"]["steps_per_epoch"] == 2
    page = client.get(f"/runs/{run['id']}").text
    assert '<span class="tag">quick</span>' in page and "max_train_images" in page
    plain = client.post(
        "/api/runs",
        json={"kind": "finetune", "dataset": "demo-tiny", "params": {"encoder": "scratch"}},
    )
    assert "quick" not in plain.json()[0]["tags"]
    edits = {"params": {"max_train_images": None, "steps_per_epoch": None}}
    clone = client.post(f"/api/runs/{run['id']}/clone", json=edits)
    assert clone.status_code == 201, clone.text
    assert clone.json()["tags"] == ["mine"]  # no limits left: no longer quick


def test_too_few_images_for_a_stratified_split_is_refused_at_launch(client):
    classes = len(client.get("/api/datasets/demo-tiny").json()["class_names"])
    body = {
        "kind": "finetune",
        "dataset": "demo-tiny",
        "params": {"encoder": "scratch", "validation_fraction": 0.5, "max_train_images": classes},
    }
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "params", "max_train_images"]
    assert f"at least {2 * classes}" in error["msg"]


@pytest.fixture(scope="module")
def other_dataset(client):
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    register(make_demo(seed=1, n_train=60, n_test=20), name="forms-other")
    return "forms-other"


def test_a_finetune_on_another_data_set_than_its_encoders_is_warned_about(client, other_dataset):
    parent = make_run("pretrain", result=TRAINED)
    request = RunCreate(kind="finetune", dataset=other_dataset, parent_run_id=parent)
    with session_scope() as session:
        (run,) = launcher.launch(session=session, run_in=request)
        assert "'demo-tiny', not 'forms-other'" in run.warnings[0]
        same = RunCreate(kind="finetune", dataset="demo-tiny", parent_run_id=parent)
        assert launcher.launch(session=session, run_in=same)[0].warnings == []
    body = {
        "dataset": other_dataset,
        "factor": "class_weights",
        "params": {"epochs": 1},
        "parent_run_id": parent,
        "seeds": [0, 1],
    }
    study = client.post("/api/ablations", json=body).json()
    assert any("not 'forms-other'" in w for w in study["warnings"])


def test_the_launch_response_carries_its_warnings(client, other_dataset):
    parent = make_run("pretrain", result=TRAINED)
    body = {"kind": "finetune", "dataset": other_dataset, "parent_run_id": parent}
    (run,) = client.post("/api/runs", json=body).json()
    assert "not 'forms-other'" in run["warnings"][0]


def test_the_form_names_fields_in_words_and_links_parents_to_their_data_set(client):
    parent = make_run("pretrain", name="weights for forms")
    html = client.get(f"/runs/new?parent={parent}").text
    form = html[html.index('data-kind="finetune"') : html.index('data-kind="ablation"')]
    assert "<legend>Early stopping</legend>" in form and "early_stopping<" not in form
    assert '<option value="val_accuracy" >val accuracy</option>' in form
    assert '<option value="val_macro_f1" >val macro F1</option>' in form
    assert re.search(rf'<option value="{parent}" selected data-dataset="demo-tiny">', form)
    assert '<fieldset data-field="params.augmentation">' in form
    for field in ("max_train_images", "steps_per_epoch"):
        assert re.search(rf'id="finetune-params\.{field}"[^>]*placeholder="all"', form)
    assert "data-warning" in form  # where the browser says the data sets differ
