"""A study's launch (store/runs/ablations.py, issue 23): the leak forecast compares the
pretrain's quick-run sample too, the default metric follows the test set's balance, and
early stopping watches the study's metric in both arms, stored with the study."""

from __future__ import annotations

import pytest

from store.db import session_scope
from store.runs.models import Run, RunGroup
from tests.web.factories import make_run

TRAINED = {"trained_stages": ["ae01", "ae02", "ae03"]}
SKEWED = "data23-skewed"
SCRATCH = {"epochs": 1, "encoder": "scratch"}


@pytest.fixture(scope="module")
def skewed(client):
    """Imbalanced training classes (2 to 12 images), a balanced test set (2 of each)."""
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    register(make_demo(seed=0, n_train=60, n_test=20, imbalance=0.2), name=SKEWED)
    return SKEWED


def _launch(client, dataset: str, **body) -> dict:
    request = {"dataset": dataset, "params": {"epochs": 1}, "seeds": [0, 1], **body}
    response = client.post("/api/ablations", json=request)
    assert response.status_code == 201, response.text
    return response.json()


def _stored(group_id: int) -> tuple[dict, list[dict]]:
    with session_scope() as session:
        group = session.get(RunGroup, group_id)
        runs = session.query(Run).filter(Run.group_id == group_id).all()
        return dict(group.params), [dict(run.params) for run in runs]


def test_a_quick_pretrain_under_a_full_study_with_its_seed_is_warned(client):
    quick = {"max_train_images": 30, "validation_fraction": 0.5}
    parent = make_run("pretrain", result=TRAINED, params={**quick, "seed": 0})
    study = _launch(
        client,
        "demo-tiny",
        factor="freeze_encoder",
        parent_run_id=parent,
        params={"epochs": 1, "validation_fraction": 0.5},
    )
    assert any("a quick-run sample of 30" in w for w in study["warnings"]), study["warnings"]
    same = _launch(
        client,
        "demo-tiny",
        factor="freeze_encoder",
        parent_run_id=parent,
        params={"epochs": 1, **quick},
    )
    assert not any("Pretrain run" in w for w in same["warnings"]), same["warnings"]


def test_a_balanced_test_set_defaults_to_accuracy_and_both_arms_stop_on_it(client, skewed):
    study = _launch(client, skewed, factor="class_weights", params=SCRATCH)
    params, runs = _stored(study["group_id"])
    assert params["metric"] == "accuracy" and params["metric_chosen"] is False
    assert params["base"]["early_stopping"]["monitor"] == "val_accuracy"
    assert {run["early_stopping"]["monitor"] for run in runs} == {"val_accuracy"}
    page = client.get(f"/api/groups/{study['group_id']}/ablation").json()
    assert page["stopping"]["matches"] is True and page["stopping"]["monitor"] == "val_accuracy"
    assert page["metric"]["why"] == "picked automatically: the test classes are balanced"


def test_a_chosen_metric_is_what_both_arms_stop_on(client, skewed):
    study = _launch(client, skewed, factor="augmentation", metric="macro_f1", params=SCRATCH)
    params, runs = _stored(study["group_id"])
    assert {run["early_stopping"]["monitor"] for run in runs} == {"val_macro_f1"}
    assert params["base"]["early_stopping"]["monitor"] == "val_macro_f1"


def test_a_fine_tune_on_a_quick_pretrain_is_warned_at_launch(client):
    quick = {"max_train_images": 30, "validation_fraction": 0.5}
    parent = make_run("pretrain", result=TRAINED, params={**quick, "seed": 0})
    body = {"kind": "finetune", "dataset": "demo-tiny", "parent_run_id": parent}
    full = {**body, "params": {"validation_fraction": 0.5, "seed": 0}}
    (run,) = client.post("/api/runs", json=full).json()
    assert any("this run splits all" in w for w in run["warnings"]), run["warnings"]
    same = {**body, "params": {**quick, "seed": 0}}
    (run,) = client.post("/api/runs", json=same).json()
    assert not any("Pretrain run" in w for w in run.get("warnings") or [])
