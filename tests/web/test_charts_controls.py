"""What the curve controls and the confusion cell read from the server (issue 22, points 12
and 14): the panels the run page's picker offers and the cells `hide` leaves out (bounded),
each curve point's wall time, a one-epoch stage drawn as bars, a confusion cell paged
through all its images, and fractions written as percentages by one helper everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.formatting import fmt_pct
from backend.reports import errors
from backend.runs import detail
from tests.web.factories import demo_test_labels, make_run
from tests.web.report_factories import make_finetune

PRETRAIN = {
    "ae01/loss": [0.3, 0.2, 0.15],
    "ae01/val_loss": [0.32, 0.22, 0.18],
    "ae02/loss": [0.5, 0.4],
    "ae02/val_loss": [0.55, 0.45],
}
PAGED_TEST_IMAGES = 1200  # about 60 right per class: more than one page of a cell


@pytest.fixture(scope="module")
def pretrain(client):
    return make_run("pretrain", metrics=PRETRAIN, params={"ae01": {"epochs": 3}})


def curves(client, run_id: int, **params) -> dict:
    response = client.get(f"/api/runs/{run_id}/curves", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_picker_lists_every_panel_and_hide_leaves_cells_out(client, pretrain):
    whole = curves(client, pretrain)
    assert [p["key"] for p in whole["panels"]] == ["ae01/loss", "ae02/loss"]
    assert [p["label"] for p in whole["panels"]] == ["ae01 · loss", "ae02 · loss"]
    assert not any(p["hidden"] for p in whole["panels"])
    assert {t["xaxis"] for t in whole["figure"]["data"]} == {"x", "x2"}

    part = curves(client, pretrain, hide="ae01/loss,no-such/panel")
    assert [p["hidden"] for p in part["panels"]] == [True, False]
    traces = part["figure"]["data"]
    assert {t["name"] for t in traces} == {"train loss", "val loss"}
    assert all(t["xaxis"] == "x" and len(t["x"]) == 2 for t in traces)  # ae02 alone
    layout = part["figure"]["layout"]
    assert "xaxis2" not in layout and layout["xaxis"]["title"]["text"] == "ae02 epoch"
    assert layout["xaxis"]["domain"] == [0, 1]  # the kept cell takes the room

    nothing = curves(client, pretrain, hide="ae01/loss,ae02/loss")
    assert nothing["figure"]["data"] == [] and nothing["points"] == 10


def test_hide_is_bounded_and_a_refusal_names_the_field(client, pretrain):
    many = ",".join(f"s{i}/loss" for i in range(detail.MAX_HIDDEN_PANELS + 1))
    response = client.get(f"/api/runs/{pretrain}/curves", params={"hide": many})
    assert response.status_code == 422
    assert "hide" in response.text and "MAX_HIDDEN_PANELS" in response.text
    long_key = "x" * (detail.MAX_PANEL_KEY + 1)
    assert client.get(f"/api/runs/{pretrain}/curves", params={"hide": long_key}).status_code == 422


def test_every_curve_point_carries_its_wall_time_for_the_time_axis(client, pretrain):
    for trace in curves(client, pretrain)["figure"]["data"]:
        assert trace["meta"] == "curve"
        times = trace["customdata"]
        assert len(times) == len(trace["x"]) and times == sorted(times)
        assert all(t >= 0 for t in times)  # seconds since the run's first epoch


def test_a_one_epoch_finetune_is_a_bar_with_its_value_not_a_dot(client):
    run_id = make_run(
        "finetune",
        metrics={"finetune/val_accuracy": [0.28], "finetune/accuracy": [0.3]},
        params={"epochs": 1},
    )
    traces = curves(client, run_id)["figure"]["data"]
    assert {t["type"] for t in traces} == {"bar"}
    assert {t["texttemplate"] for t in traces} == {"%{y:.1%}"}  # accuracy as a percentage
    validation = next(t for t in traces if t["name"].startswith("val"))
    assert validation["marker"]["pattern"]["shape"] == "/"  # told apart without colour


@pytest.fixture(scope="module")
def paged(client):
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    register(make_demo(seed=0, n_train=10, n_test=PAGED_TEST_IMAGES), name="charts-paged")
    return make_finetune(None, name="paged-cells", n_test=PAGED_TEST_IMAGES, dataset="charts-paged")


def test_a_confusion_cell_pages_through_all_its_images(client, paged):
    y = demo_test_labels(PAGED_TEST_IMAGES)
    true = int(y[0])
    right = {i for i in range(len(y)) if i % 2 == 0 and y[i] == true}
    assert len(right) > errors.CELL_PAGE  # more than one page
    url = f"/api/runs/{paged}/errors"
    seen, offset = [], 0
    while True:
        page = client.get(url, params={"true": true, "pred": true, "offset": offset}).json()
        assert page["total"] == len(right) and page["offset"] == offset
        assert len(page["items"]) <= errors.CELL_PAGE
        if not page["items"]:
            break
        seen += [item["index"] for item in page["items"]]
        offset += page["limit"]
    assert len(seen) == len(set(seen)) and set(seen) == right  # all of them, each once


def test_a_cell_page_is_bounded(client, paged):
    url = f"/api/runs/{paged}/errors"
    too_many = client.get(url, params={"true": 0, "pred": 0, "limit": errors.MAX_CELL_PAGE + 1})
    assert too_many.status_code == 422 and "limit" in too_many.text
    too_far = client.get(url, params={"true": 0, "pred": 0, "offset": errors.MAX_OFFSET + 1})
    assert too_far.status_code == 422 and "offset" in too_far.text
    assert client.get(url, params={"true": 0, "pred": 0, "offset": -1}).status_code == 422


def test_the_run_page_has_the_controls_and_the_cell_pager(client, paged):
    html = client.get(f"/runs/{paged}").text
    assert 'id="curve-controls"' in html and "/static/js/charts.js" in html
    assert 'id="cell-pager"' in html and 'id="cell-next"' in html


@given(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False)))
def test_fmt_pct_writes_a_fraction_as_pythons_percent_format(value):
    if value is None or value != value:
        assert fmt_pct(value) == "–"
    else:
        assert fmt_pct(value) == f"{value:.1%}"
        assert fmt_pct(value, 0) == f"{value:.0%}"


def test_a_one_epoch_line_in_the_report_writes_its_value():
    from backend.reports import svg

    chart = str(
        svg.line_chart(
            [{"name": "a", "points": [(1, 0.212)]}], title="t", y_label="acc", percent=True
        )
    )
    assert 'class="tick value">21.2%</text>' in chart
