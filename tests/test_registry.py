"""The job-kind registry (jobspec/kinds.py) is the one list every layer reads: a kind added
there gets a form tab, API validation by its own model and its own Celery task; the stage
plans behind progress, ETAs and limits agree with what the jobs train."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ConfigDict, Field

from backend.runs import form
from jobspec import budget, kind_names, kinds
from jobspec.metrics import goal_of, metric
from jobspec.params import STAGES as PARAMS_STAGES
from jobspec.params import Stage
from store import queue
from tests.stack import REPO_ROOT


class ToyConfig(BaseModel):
    """Counts sheep, for the registry's tests.

    Only the first paragraph is the form's help.
    """

    model_config = ConfigDict(extra="forbid")

    sheep: int = Field(3, ge=1, le=100, description="How many sheep to count")
    epochs: int = Field(2, ge=1, le=10)
    batch_size: int = Field(8, ge=1, le=64)


TOY = kinds.JobKind(
    name="toy",
    params=ToyConfig,
    entry="tests.toykind_job:count",
    plan=lambda config: {"count": config.epochs},
    columns=lambda params: [["sheep", str(params.get("sheep", "?"))]],
)


@pytest.fixture
def toy():
    with kinds.registered(TOY) as kind:
        yield kind
    assert "toy" not in kinds.names()


class FakeBroker:
    """Records what the queue contract sends instead of sending it."""

    def __init__(self):
        self.sent: list[tuple[str, list]] = []

    def send_task(self, name, args, queue=None):
        self.sent.append((name, args))
        return SimpleNamespace(id=f"task-{len(self.sent)}")


def test_a_registered_kind_gets_a_form_tab_with_its_models_fields(client, toy):
    html = client.get("/runs/new?kind=toy").text
    assert 'data-kind="toy" novalidate >' in html  # its tab, chosen
    assert 'name="params.sheep"' in html and "How many sheep to count" in html
    assert "Counts sheep, for the registry&#39;s tests." in html
    assert "Only the first paragraph" not in html
    runs_page = client.get("/runs").text
    assert '<option value="toy"' in runs_page  # the runs table's kind filter


def test_a_registered_kind_is_validated_by_its_own_model(client, toy):
    response = client.post(
        "/api/runs", json={"kind": "toy", "dataset": "demo-tiny", "params": {"sheep": 0}}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "params", "sheep"]
    response = client.post(
        "/api/runs", json={"kind": "toy", "dataset": "demo-tiny", "params": {"wolves": 1}}
    )
    assert response.json()["detail"][0]["loc"] == ["body", "params", "wolves"]


def test_an_unregistered_kind_is_refused_naming_the_kind(client):
    response = client.post("/api/runs", json={"kind": "toy", "dataset": "demo-tiny"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "kind"]


def test_a_registered_kind_is_sent_to_its_own_task(client, toy, monkeypatch):
    assert queue.task_name("toy") == "stacklab.toy" == toy.task
    broker = FakeBroker()
    monkeypatch.setattr(queue, "client", lambda: broker)
    monkeypatch.setattr(queue, "check", lambda: None)
    response = client.post(
        "/api/runs", json={"kind": "toy", "dataset": "demo-tiny", "params": {"sheep": 7}}
    )
    assert response.status_code == 201, response.text
    run = response.json()[0]
    assert run["params"] == {"sheep": 7, "epochs": 2, "batch_size": 8}
    assert broker.sent == [("stacklab.toy", [run["id"]])]
    row = next(r for r in client.get("/api/runs/table").json()["items"] if r["id"] == run["id"])
    assert row["key_params"] == [["sheep", "7"]]


def test_the_queue_sends_every_kind_to_a_task_the_worker_registers():
    """worker/tasks.py names its tasks itself: they must be the registry's names."""
    code = (
        "import json; import worker.tasks; from worker.celery_app import app;"
        "print(json.dumps(sorted(app.tasks)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    registered = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert set(queue.tasks().values()) <= registered
    assert queue.tasks()["pretrain"] == "stacklab.pretrain"


def test_stages_are_defined_once_and_plans_use_the_models_defaults():
    assert kinds.STAGES == PARAMS_STAGES == ("ae01", "ae02", "ae03")
    assert Stage.__args__ == kinds.STAGES
    plans = {name: kinds.get(name).stage_plan({}) for name in ("pretrain", "tune", "finetune")}
    assert plans == {
        "pretrain": {"ae01": 10, "ae02": 10, "ae03": 10},
        "tune": {"trial": 9 * 5},
        "finetune": {"finetune": 50},
    }
    assert kinds.get("pretrain").stage_plan({"ae02": {"epochs": 3}})["ae02"] == 3
    assert kinds.get("pretrain").stage_plan({"ae01": {"epochs": -1}}) == {}  # invalid: no plan


@pytest.mark.parametrize("kind", ["pretrain", "tune", "finetune"])
def test_eta_limits_and_progress_read_the_same_plan(kind):
    """The queue panel's estimate, the limit on total epochs and the runner's progress plan
    all come from the registry (they used to assume 0, the models' and 10 epochs)."""
    from backend.runs import eta

    job = kinds.get(kind)
    plan = job.stage_plan({})
    epochs = sum(plan.values())
    assert budget.total_epochs(kind, job.params()) == epochs
    assert {s.stage: s.epochs for s in eta.plan_of(kind, {}, n_train=100)} == plan


def test_the_worker_trains_the_stages_the_registry_plans():
    """The runner's ETA plan is the registry's, and the training core's stage list and
    finetune parent stages are the registry's too."""
    code = """
import json
from jobspec.params import FinetuneConfig
from worker import runner
from worker.ml import finetune, models
spec = lambda kind: type("Spec", (), {"kind": kind, "params": {"ae03": {"epochs": 4}}})()
print(json.dumps({
    "stages": list(models.STAGES),
    "pretrain": runner._stage_plan(spec("pretrain")),
    "finetune": runner._stage_plan(spec("finetune")),
    "single": list(finetune.pretrained_stages(FinetuneConfig(encoder="single"))),
    "scratch": list(finetune.pretrained_stages(FinetuneConfig(encoder="scratch"))),
}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["stages"] == list(kinds.STAGES)
    assert seen["pretrain"] == kinds.get("pretrain").stage_plan({"ae03": {"epochs": 4}})
    assert seen["pretrain"] == {"ae01": 10, "ae02": 10, "ae03": 4}
    assert seen["finetune"] == {}  # one stage: its own progress carries the ETA
    assert (seen["single"], seen["scratch"]) == (["ae01"], [])


def test_parent_stages_come_from_one_function():
    tune, finetune = kinds.get("tune").params, kinds.get("finetune").params
    assert kinds.parent_stages("tune", tune(stage="ae01")) == ()
    assert kinds.parent_stages("tune", tune(stage="ae03")) == ("ae01", "ae02")
    assert kinds.parent_stages("finetune", finetune()) == kinds.STAGES
    assert kinds.parent_stages("finetune", finetune(encoder="scratch")) == ()
    assert kinds.parent_stages("pretrain", kinds.get("pretrain").params()) == ()


@pytest.mark.parametrize(
    ("key", "goal", "panel", "label"),
    [
        ("ae01/val_loss", "min", "loss", "val loss"),
        ("trial-3/val_loss", "min", "loss", "val loss"),
        ("finetune/val_accuracy", "max", "accuracy", "val acc"),
        ("finetune/accuracy", "max", "accuracy", "acc"),
        ("ae02/epoch_seconds", "min", "time", "epoch time"),
        ("images_per_sec", "max", "throughput", "images/s"),
        ("trial-12/learning_rate", "max", "optimizer", "learning rate"),
    ],
)
def test_a_metric_is_looked_up_by_name_whatever_its_stage(key, goal, panel, label):
    found = metric(key)
    assert (found.goal, found.panel, found.label) == (goal, panel, label)
    assert goal_of(key) == goal


def test_the_curves_chart_only_losses_and_accuracies():
    from backend.runs import figures

    assert [figures._panel(n) for n in ("val_loss", "accuracy", "epoch_seconds", "lr")] == [
        "loss",
        "accuracy",
        None,
        None,
    ]


@pytest.mark.parametrize(
    "name",
    [
        queue.IMPORT,  # enqueue()'s name for a data set import
        queue.EVALUATE,  # and for scoring a stopped finetune
        queue.IMPORT_TASK.removeprefix(kinds.TASK_PREFIX),  # its task would be the import's
        form.STUDY_KIND,  # the new-run form's ablation tab
        *form.LEGACY_KINDS,  # and that tab's old name in kept links
    ],
)
def test_a_kind_may_not_take_a_name_another_task_or_a_form_tab_has(name):
    with pytest.raises(ValueError, match="reserved"):
        kinds.register(dataclasses.replace(TOY, name=name))
    assert name not in kinds.names()


@pytest.mark.parametrize(
    "name", ["", "Toy", "toy-kind", "toy kind", "1toy", "_toy", "toy/x", "tøy", "t" * 33]
)
def test_a_kind_name_must_be_a_short_lowercase_identifier(name):
    with pytest.raises(ValueError, match="lowercase"):
        kinds.register(dataclasses.replace(TOY, name=name))
    assert name not in kinds.names()


def test_every_name_the_queue_and_the_form_take_for_themselves_is_reserved():
    """One set, derived from the constants those names are defined by."""
    other_names = {*queue.OTHER_TASKS, form.STUDY_KIND, *form.LEGACY_KINDS}
    other_names |= {task.removeprefix(kinds.TASK_PREFIX) for task in queue.OTHER_TASKS.values()}
    assert other_names <= kind_names.RESERVED
    assert not set(kinds.names()) & kind_names.RESERVED
    with kinds.registered(dataclasses.replace(TOY, name="toy_2")) as kind:
        assert kind.name in kinds.names()
