"""The worker's system samples (memory, CPU, GPU) get their own chart on the run page,
against seconds, and stay out of the epoch curves (tests/web/test_time_series.py: out of
everything else that reads epochs)."""

from __future__ import annotations

from tests.web.factories import make_run


def test_system_samples_are_charted_against_seconds_apart_from_the_epoch_curves(client):
    run = make_run(
        "finetune",
        metrics={"finetune/loss": [1.0, 0.8]},
        samples={
            "rss_mb": [(0, 900.0), (5, 1100.0), (10, 1150.0)],
            "cpu_percent": [(0, 150.0), (5, 190.0), (10, 180.0)],
        },
    )
    data = client.get(f"/api/runs/{run}/curves").json()
    system = data["system"]
    names = [trace["name"] for trace in system["data"]]
    assert names == ["process memory", "CPU"]  # memory first; no GPU on this worker
    assert system["layout"]["xaxis"]["title"]["text"] == "seconds since the run started"
    assert system["data"][0]["x"] == [0, 5, 10]
    assert "MiB" in system["layout"]["yaxis"]["title"]["text"]
    assert data["last_step"] == 2  # the newest epoch, not the newest second
    assert all("system" not in str(t.get("name", "")) for t in data["figure"]["data"])
    assert all(t["name"] not in ("process memory", "CPU") for t in data["figure"]["data"])
    assert 'id="system-curves"' in client.get(f"/runs/{run}").text


def test_a_run_without_samples_has_no_system_chart(client):
    run = make_run("finetune", metrics={"finetune/loss": [1.0]})
    assert client.get(f"/api/runs/{run}/curves").json()["system"] is None
