"""Time series are not epochs: the worker's samples (memory, CPU, GPU every few seconds) are
stored and served as their own time-indexed series, and nothing that reads epochs (progress,
the partial-run sentence, the kept epoch, compare, the metric exports, the epoch charts)
ever sees them. Regression: a cancelled run's page once said "cancelled in system at epoch
236 of 236 (finetune complete)" while its header said "epoch 2 of 3"."""

from __future__ import annotations

import csv
import io

import pytest

from store.db import session_scope
from store.runs import attempts
from store.runs import metrics as metrics_service
from store.settings import get_settings
from tests.web.factories import make_run
from worker.recorder import StoreRecorder
from worker.system_metrics import Sampler

EPOCHS = 3  # planned
INTERVAL = 5  # seconds between samples
SAMPLES = 240  # 20 minutes of them: far more samples than epochs
PROGRESS = {  # the header: in epoch 2 of 3 when the cancel came
    "stage": "finetune",
    "epoch": 2,
    "epochs": EPOCHS,
    "step": 4,
    "steps": 10,
    "images_per_sec": 50.0,
    "eta_seconds": 100.0,
    "stage_index": 1,
    "stage_count": 1,
}
TRAINING = {  # what the worker stores for a finetune cancelled in its second epoch
    "epochs_run": 2,
    "epochs_planned": EPOCHS,
    "best_epoch": 2,
    "restored_best_weights": True,
    "cancelled": True,
    "monitor": "val_loss",
    "stopped_early": False,
}


class Clock:
    """A monotonic clock the test moves by hand (no sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cancelled_mid_epoch(name: str) -> int:
    """A finetune cancelled in epoch 2 of 3, written as a worker writes it: two epochs and
    240 samples through the run's link (fenced by attempt 1), then the final write."""
    run_id = make_run(
        "finetune", "running", name=name, params={"epochs": EPOCHS}, progress=PROGRESS
    )
    recorder = StoreRecorder(run_id, 1, settings=get_settings(), stage_plan={"finetune": EPOCHS})
    clock = Clock()
    sampler = Sampler(recorder, INTERVAL, clock=clock)
    for i in range(SAMPLES):
        clock.now = 1000.0 + i * INTERVAL
        sampler.record()
        if i in (60, 200):  # the epochs end while the samples go on
            epoch = 1 if i == 60 else 2
            loss = 1.0 / epoch
            recorder.epoch_ended("finetune", epoch, {"loss": loss, "val_loss": loss + 0.1})
    pending = recorder.take_pending()
    with session_scope() as session:
        attempts.fence(session, run_id, 1)
        pending.write(session, run_id, 1)
        attempts.finish(
            session=session,
            run_id=run_id,
            attempt=1,
            status="cancelled",
            result={"training": TRAINING},
        )
    return run_id


@pytest.fixture(scope="module")
def cancelled(client) -> int:
    return cancelled_mid_epoch("cancelled mid-epoch, sampled for 20 minutes")


def test_the_run_page_of_a_run_cancelled_mid_epoch_tells_one_story(client, cancelled):
    page = client.get(f"/runs/{cancelled}").text
    sentence = f"cancelled in finetune at epoch 2 of {EPOCHS}"
    assert f'id="run-partial" title="{sentence}"' in page  # the badge
    assert f"This run was {sentence}" in page  # the partial card
    assert f'id="p-epoch">2/{EPOCHS}<' in page  # the header
    assert "in system" not in page and "epoch 236" not in page
    partial = client.get(f"/api/runs/{cancelled}/partial").json()["partial"]
    assert (partial["stage"], partial["epoch"], partial["epochs_planned"]) == ("finetune", 2, 3)
    assert partial["complete_stages"] == []
    curves = client.get(f"/api/runs/{cancelled}/curves").json()
    assert curves["last_step"] == 2  # the newest epoch, not the newest second
    epoch_axes = [t["x"] for t in curves["figure"]["data"]]
    assert epoch_axes and all(max(x) <= 2 for x in epoch_axes)


def test_the_system_chart_draws_from_the_samples_against_seconds(client, cancelled):
    curves = client.get(f"/api/runs/{cancelled}/curves?max_points=50").json()
    system = curves["system"]
    assert [t["name"] for t in system["data"]][:1] == ["process memory"]
    memory = system["data"][0]
    assert len(memory["x"]) <= 50  # shortened on the server, shape kept
    assert memory["x"][0] == 0 and memory["x"][-1] == (SAMPLES - 1) * INTERVAL
    assert system["layout"]["xaxis"]["title"]["text"] == "seconds since the run started"
    samples = client.get(f"/api/runs/{cancelled}/samples").json()
    rss = samples["series"]["rss_mb"]
    assert rss["seconds"] == [i * INTERVAL for i in range(SAMPLES)]
    assert len(rss["values"]) == SAMPLES and set(rss["attempts"]) == {1}
    assert samples["x"] == "seconds"


def test_metric_exports_hold_epochs_only(client, cancelled):
    for route in (f"/api/runs/{cancelled}/metrics", f"/api/runs/{cancelled}/metrics.json"):
        data = client.get(route).json()
        assert set(data["series"]) == {"finetune/loss", "finetune/val_loss"}, route
        assert set(data["summary"]) == {"finetune/loss", "finetune/val_loss"}, route
    text = client.get(f"/api/runs/{cancelled}/metrics.csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["stage"], r["epoch"]) for r in rows] == [("finetune", "1"), ("finetune", "2")]
    assert "rss_mb" not in text and "cpu_percent" not in text


def test_compare_keeps_epochs_of_epoch_series_only(client, cancelled):
    other = cancelled_mid_epoch("another sampled run")
    data = client.get(f"/api/compare?ids={cancelled},{other}").json()
    keys = {row["key"] for row in data["metrics"]}
    assert keys == {"finetune/loss", "finetune/val_loss"}
    for row in data["metrics"]:
        assert {cell["best_epoch"] for cell in row["cells"].values()} <= {1, 2}
    assert all("rss" not in c["metric"] and "cpu" not in c["metric"] for c in data["curves"])
    assert {run["partial"]["stage"] for run in data["runs"]} == {"finetune"}


def test_an_epoch_write_of_a_sampled_series_is_refused(client, cancelled):
    """The store itself refuses a sample sent down the epoch channel, however it comes."""
    run_id = make_run("finetune", "running")
    with session_scope() as session:
        for stage, values in (("system", {"rss_mb": 900.0}), ("finetune", {"cpu_percent": 9})):
            with pytest.raises(ValueError, match="not an epoch"):
                metrics_service.log_epoch(
                    session=session, run_id=run_id, stage=stage, step=1, values=values
                )
    with pytest.raises(ValueError, match="not an epoch"):
        make_run("finetune", metrics={"system/rss_mb": [900.0]})


def test_a_stage_outside_the_kinds_plan_is_not_an_epoch_stage(client):
    assert metrics_service.is_epoch_stage("finetune", {}, "finetune")
    assert not metrics_service.is_epoch_stage("finetune", {}, "system")
    assert not metrics_service.is_epoch_stage("finetune", {}, "ae01")
    assert metrics_service.is_epoch_stage("tune", {}, "trial-12")
    assert not metrics_service.is_epoch_stage("tune", {}, "trial-x")
    assert metrics_service.is_epoch_stage("pretrain", {}, "ae02")
    assert metrics_service.is_epoch_stage("no-such-kind", {}, "anything")  # plan unknown
    assert not metrics_service.is_epoch_stage("no-such-kind", {}, "system")
