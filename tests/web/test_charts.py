"""What the run and compare charts draw: colours, legends, epoch axes, stage layout, units,
and which metrics are ranked; reconstructions shown as each pretrain stage ends."""

from __future__ import annotations

import pytest

from tests.web.factories import finetune_result, make_run, npz_bytes, reconstructions_npz

FINETUNE_METRICS = {
    "finetune/loss": [1.2, 0.8, 0.6],
    "finetune/val_loss": [1.1, 0.9, 0.95],
    "finetune/accuracy": [0.4, 0.6, 0.7],
    "finetune/val_accuracy": [0.38, 0.5, 0.55],
    "finetune/epoch_seconds": [3.0, 2.0, 2.5],
    "finetune/images_per_sec": [100.0, 150.0, 140.0],
}


def curves(client, run_id: int) -> dict:
    response = client.get(f"/api/runs/{run_id}/curves")
    assert response.status_code == 200, response.text
    return response.json()["figure"]


def colour(trace: dict) -> str:
    """A line's colour, or a one-epoch stage's bar's."""
    return (trace.get("line") or trace["marker"])["color"]


def by_name(figure: dict) -> dict[str, dict]:
    return {(trace["xaxis"], trace["name"]): trace for trace in figure["data"]}


@pytest.fixture(scope="module")
def finetune(client):
    return make_run(
        "finetune",
        metrics=FINETUNE_METRICS,
        result=finetune_result(best_epoch=2, epochs_run=3),
        params={"epochs": 3},
    )


def test_train_and_validation_loss_and_accuracy_each_get_their_own_colour(client, finetune):
    figure = curves(client, finetune)
    traces = figure["data"]
    assert sorted(t["name"] for t in traces) == ["train acc", "train loss", "val acc", "val loss"]
    colours = {t["name"]: t["line"]["color"] for t in traces}
    assert len(set(colours.values())) == 4, colours  # no two series share one blue
    dashes = {t["name"]: t["line"]["dash"] for t in traces}
    assert dashes == {
        "train loss": "solid",
        "val loss": "dash",
        "train acc": "solid",
        "val acc": "dash",
    }
    # epoch time and images/s are not curves of the model's quality
    assert all("time" not in t["name"] and "images" not in t["name"] for t in traces)


def test_each_panel_has_its_own_legend_and_title(client, finetune):
    figure = curves(client, finetune)
    layout = figure["layout"]
    legends = {t["xaxis"]: t["legend"] for t in figure["data"]}
    assert legends == {"x": "legend", "x2": "legend2"}  # loss left, accuracy right
    assert {"legend", "legend2"} <= set(layout)
    assert layout["legend"]["x"] <= layout["xaxis"]["domain"][1]  # inside its own panel
    assert layout["legend2"]["x"] > layout["xaxis"]["domain"][1]
    titles = [a["text"] for a in layout["annotations"] if a.get("xref") == "paper"]
    assert titles == ["Loss", "Accuracy"]


def test_epoch_axes_start_at_1_with_whole_number_ticks(client, finetune):
    layout = curves(client, finetune)["layout"]
    for axis in ("xaxis", "xaxis2"):
        spec = layout[axis]
        assert spec["tickvals"] == [1, 2, 3] and spec["ticktext"] == ["1", "2", "3"]
        low, high = spec["range"]
        assert 0.5 <= low < 1 and 3 < high < 3.5, spec["range"]  # 1..3, no 0 and no 1.2
    long = make_run("finetune", metrics={"finetune/loss": [1.0 - i / 100 for i in range(37)]})
    spec = curves(client, long)["layout"]["xaxis"]
    assert spec["tickvals"] == [1, 5, 10, 15, 20, 25, 30, 35] and 0.5 < spec["range"][0] < 1


def test_accuracy_reads_as_percent_on_the_chart_and_the_run_page(client, finetune):
    figure = curves(client, finetune)
    assert figure["layout"]["yaxis2"]["tickformat"] == ".1~%"  # the accuracy panel
    assert "tickformat" not in figure["layout"]["yaxis"]  # the loss panel: plain numbers
    acc = by_name(figure)[("x2", "val acc")]
    assert "%{y:.1%}" in acc["hovertemplate"]
    page = client.get(f"/runs/{finetune}").text
    assert 'id="eval-acc">80.0%<' in page and 'id="eval-bacc">80.0%<' in page
    assert ">80.0%</td>" in page  # per-class precision, recall and F1 too


def test_pretrain_stages_are_small_multiples_each_with_its_own_epoch_axis(client):
    run_id = make_run(
        "pretrain",
        metrics={
            "ae01/loss": [0.3, 0.2, 0.15],
            "ae01/val_loss": [0.32, 0.22, 0.18],
            "ae02/loss": [0.5],
            "ae02/val_loss": [0.55],
            "ae03/loss": [0.7, 0.6],
            "ae03/val_loss": [0.72, 0.66],
            "ae01/epoch_seconds": [2.0, 2.0, 2.0],
        },
        params={s: {"epochs": 3} for s in ("ae01", "ae02", "ae03")},
    )
    figure = curves(client, run_id)
    layout = figure["layout"]
    axes = {t["name"] + " " + t["xaxis"] for t in figure["data"]}
    assert axes == {f"{s} {x}" for s in ("train loss", "val loss") for x in ("x", "x2", "x3")}
    titles = [a["text"] for a in layout["annotations"] if a.get("xref") == "paper"]
    assert titles == ["ae01 · loss", "ae02 · loss", "ae03 · loss"]
    domains = [layout[a]["domain"] for a in ("xaxis", "xaxis2", "xaxis3")]
    assert domains[0][1] < domains[1][0] < domains[1][1] < domains[2][0]  # side by side
    ae02 = layout["xaxis2"]
    # The one-epoch stage: not a lone dot at the edge of a shared axis but its own panel,
    # its values drawn as bars with the number written on them.
    assert ae02["title"]["text"] == "ae02 epoch" and ae02["range"][0] < 1 < ae02["range"][1]
    one_epoch = [t for t in figure["data"] if t["xaxis"] == "x2"]
    assert {t["type"] for t in one_epoch} == {"bar"}
    assert all(t["texttemplate"] == "%{y:.4g}" and t["x"] == [1] for t in one_epoch)
    assert {t["type"] for t in figure["data"] if t["xaxis"] != "x2"} == {"scatter"}
    assert {t["legend"] for t in figure["data"]} == {"legend", "legend2", "legend3"}
    colours = {(t["name"], colour(t)) for t in figure["data"]}
    assert len({c for _, c in colours}) == 2  # train and validation, the same in every stage


def test_a_running_pretrain_draws_its_planned_stages_with_their_planned_epochs(client):
    run_id = make_run(
        "pretrain",
        "running",
        metrics={"ae01/loss": [0.3, 0.2], "ae01/val_loss": [0.31, 0.25]},
        params={"ae01": {"epochs": 4}, "ae02": {"epochs": 6}, "ae03": {"epochs": 2}},
    )
    layout = curves(client, run_id)["layout"]
    assert [layout[a]["range"][1] for a in ("xaxis", "xaxis2", "xaxis3")] == pytest.approx(
        [4.4, 6.4, 2.4]
    )


def test_compare_bolds_scores_only_and_writes_accuracy_as_percent(client, finetune):
    other = make_run(
        "finetune",
        metrics={
            **FINETUNE_METRICS,
            "finetune/epoch_seconds": [1.0],
            "finetune/val_accuracy": [0.9],
        },
        result=finetune_result(),
    )
    data = client.get(f"/api/compare?ids={finetune},{other}").json()
    rows = {row["key"]: row for row in data["metrics"]}
    for key in ("finetune/epoch_seconds", "finetune/images_per_sec"):
        assert rows[key]["scored"] is False and rows[key]["best_run"] is None, rows[key]
    assert rows["finetune/val_accuracy"]["best_run"] == str(other)
    assert rows["finetune/val_accuracy"]["percent"] is True
    assert rows["finetune/val_loss"]["percent"] is False
    assert rows["finetune/epoch_seconds"]["label"] == "finetune epoch time (s)"
    tests = {row["key"]: row for row in data["tests"]}
    assert tests["accuracy"]["percent"] is True
    charts = {c["metric"]: c["figure"] for c in data["curves"]}
    assert charts["val_accuracy"]["layout"]["yaxis"]["tickformat"] == ".1~%"
    assert charts["val_accuracy"]["layout"]["xaxis"]["tickvals"][0] == 1
    assert all(t["line"]["dash"] == "dash" for t in charts["val_accuracy"]["data"])


def test_compare_draws_each_pretrain_stage_on_its_own_chart(client):
    a, b = (
        make_run("pretrain", metrics={"ae01/val_loss": [0.3, 0.2], "ae02/val_loss": [0.5]})
        for _ in range(2)
    )
    charts = [c["metric"] for c in client.get(f"/api/compare?ids={a},{b}").json()["curves"]]
    assert charts == ["ae01/val_loss", "ae02/val_loss"]


def test_reconstructions_show_as_each_pretrain_stage_ends(client):
    after_ae01 = npz_bytes(**{k: v for k, v in _arrays().items() if k in ("input", "ae01")})
    run_id = make_run(
        "pretrain",
        "running",
        metrics={"ae01/loss": [0.3], "ae02/loss": [0.4]},
        artifacts={"reconstructions.npz": after_ae01},
        progress={"stage": "ae02", "epoch": 1, "epochs": 10, "step": 1, "steps": 4},
    )
    info = client.get(f"/api/runs/{run_id}/reconstructions").json()
    assert info["rows"] == ["input", "ae01"]
    assert info["url"].startswith(f"/api/runs/{run_id}/reconstructions.png?v=")
    png = client.get(info["url"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    page = client.get(f"/runs/{run_id}").text
    assert 'id="recon-img" src=' in page and "<span>ae01</span>" in page
    assert "<span>ae02</span>" not in page  # not reconstructed yet: ae02 is still training
    empty = make_run("pretrain", "running")
    assert client.get(f"/api/runs/{empty}/reconstructions").json() == {
        "rows": [],
        "url": None,
        "sha256": None,
    }


def _arrays() -> dict:
    import io

    import numpy as np

    with np.load(io.BytesIO(reconstructions_npz(3))) as data:
        return {key: data[key] for key in data.files}
