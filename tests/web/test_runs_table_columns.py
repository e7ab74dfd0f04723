"""The runs table's columns at scale: any parameter or metric as a column and a sort key,
keyset paging that agrees with offset paging, the filter language's 422, the column
catalogue, the wide CSV and the names downloads are saved as; SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from backend import exports
from backend.runs import views
from tests.web.factories import make_run
from tests.web.paging import by_cursor_and_offset

SORTS = (
    "created",
    "name",
    "id",
    "kind",
    "status",
    "dataset",
    "tags",
    "params",
    "duration",
    "finished",
    "priority",
    "test_accuracy",
    "launched_by",
    "best",
    "param.learning_rate",
    "param.optimizer",
    "param.augment",
    "metric.finetune/val_accuracy",
    "metric.finetune/val_loss",
)


@pytest.fixture(scope="module")
def runs(client):
    """Nine finetunes of this module's tag: some with a learning rate, an optimizer, a
    flag, val accuracy (some without), ties included."""
    tag = f"cols-{uuid.uuid4().hex[:6]}"
    ids = []
    for i in range(9):
        params: dict = {"augment": i % 2 == 0, "optimizer": ["adam", "sgd", "rmsprop"][i % 3]}
        if i % 4 != 3:
            params["learning_rate"] = [0.01, 0.001, 0.01, 0.1][i % 4]
        metrics = {"finetune/val_loss": [1.0, 0.5 + i / 100]}
        if i % 3 != 2:
            metrics["finetune/val_accuracy"] = [0.2, [0.5, 0.7, 0.5][i % 3] + (i // 3) / 10]
        ids.append(make_run(name=f"run {i}", tags=[tag], params=params, metrics=metrics))
    return tag, ids


def _pages(client, tag: str, sort: str, order: str, limit: int = 2) -> tuple[list, list]:
    """Ids page by page, by cursor and by offset."""
    base = {"filter": f"tag = {tag}", "sort": sort, "order": order, "limit": limit}
    return by_cursor_and_offset(client, base, runs=20, pages=20)


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_every_column_sorts_and_pages_by_cursor_as_by_offset(client, runs, sort, order):
    tag, ids = runs
    by_cursor, by_offset = _pages(client, tag, sort, order)
    assert sorted(by_cursor) == sorted(ids)  # every run once
    assert by_cursor == by_offset


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_a_sort_by_data_set_walks_them_by_name_any_case_then_runs_by_id(client, order):
    """Runs of three data sets, launched interleaved: the table lists them a data set at a
    time (by name, any case), each data set's runs by id, the same by cursor as by offset
    (backend/runs/dataset_sort.py walks one data set at a time)."""
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    tag = f"dsort-{uuid.uuid4().hex[:6]}"
    names = [f"{tag}gamma", f"{tag.upper()}BETA", f"{tag}alpha"]
    for seed, name in enumerate(names):
        register(make_demo(seed=seed, n_train=20, n_test=10), name=name)
    made = [(name, make_run(tags=[tag], dataset=name)) for _ in range(3) for name in names]
    with_ids = {name: sorted(i for n, i in made if n == name) for name in names}
    expected = [i for name in sorted(names, key=str.lower) for i in with_ids[name]]
    if order == "desc":
        expected.reverse()
    by_cursor, by_offset = _pages(client, tag, "dataset", order)
    assert by_cursor == by_offset == expected


def test_a_param_or_metric_sort_puts_runs_without_a_value_last(client, runs):
    tag, ids = runs
    rows = client.get(
        "/api/runs/table",
        params={
            "filter": f"tag = {tag}",
            "sort": "metric.finetune/val_accuracy",
            "order": "desc",
            "columns": "metric.finetune/val_accuracy,param.learning_rate,param.augment",
        },
    ).json()["items"]
    values = [row["values"].get("metric.finetune/val_accuracy") for row in rows]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True) and len(present) == 6
    assert values[6:] == [None] * 3  # the three without val accuracy, last
    first = next(row for row in rows if row["id"] == ids[0])
    assert first["values"]["param.learning_rate"] == 0.01
    assert first["values"]["param.augment"] is True
    lr = client.get(
        "/api/runs/table",
        params={"filter": f"tag = {tag}", "sort": "param.learning_rate", "order": "asc"},
    ).json()["items"]
    assert [row["id"] for row in lr][-2:] == [ids[3], ids[7]]  # no value: last, by id


def test_the_filter_language_narrows_the_table_and_a_bad_filter_is_a_422_naming_where(client, runs):
    tag, ids = runs
    found = client.get(
        "/api/runs/table",
        params={"filter": f"tag = {tag} and param.learning_rate < 0.05 and param.augment = true"},
    ).json()
    assert sorted(item["id"] for item in found["items"]) == sorted(
        ids[i]
        for i in range(9)
        if i % 2 == 0 and i % 4 != 3 and [0.01, 0.001, 0.01, 0.1][i % 4] < 0.05
    )
    assert found["total"] == len(found["items"]) and found["total_is_lower_bound"] is False
    metric = client.get(
        "/api/runs/table",
        params={"filter": f"tag in ({tag}, nothing) and metric.finetune/val_accuracy >= 0.7"},
    ).json()["items"]
    assert {item["id"] for item in metric} == {ids[1], ids[4], ids[6], ids[7]}
    bad = client.get("/api/runs/table", params={"filter": f"tag = {tag} and learning_rate < 1"})
    assert bad.status_code == 422
    message = str(bad.json())
    assert "filter" in message and "at character" in message and "expected a field" in message
    long = client.get("/api/runs/table", params={"filter": "name ~ a and " * 200})
    assert long.status_code == 422 and "filter" in str(long.json())
    page = client.get("/runs", params={"filter": f"tag = {tag} and param.optimizer = adam"})
    assert page.status_code == 200
    shown = client.get("/runs", params={"filter": "tag = x and lr < 1"})  # said on the page
    assert shown.status_code == 200


def test_a_bad_sort_or_cursor_is_a_422_and_the_page_falls_back(client, runs):
    assert client.get("/api/runs/table", params={"sort": "nope"}).status_code == 422
    assert client.get("/api/runs/table", params={"cursor": "garbage!"}).status_code == 422
    first = client.get("/api/runs/table", params={"limit": 1, "sort": "name"}).json()
    other = client.get(
        "/api/runs/table", params={"limit": 1, "sort": "created", "cursor": first["next_cursor"]}
    )
    assert other.status_code == 422 and "cursor" in str(other.json())
    assert client.get("/runs", params={"sort": "nope"}).status_code == 200
    assert client.get("/runs", params={"sort": "param.learning_rate"}).status_code == 200


def test_characters_no_database_takes_are_a_422_never_a_500(client, runs):
    import base64
    import json

    for params in (
        {"filter": 'name = "a\x00b"'},
        {"filter": "tag = \x07"},
        {"sort": "param.lr\x00"},
        {"columns": "metric.a\x00"},
        {
            "sort": "name",
            "cursor": base64.urlsafe_b64encode(
                json.dumps({"s": "name", "o": "desc", "v": ["a\x00", 1]}).encode()
            ).decode(),
        },
    ):
        answer = client.get("/api/runs/table", params=params)
        assert answer.status_code == 422, (params, answer.text)


def test_the_column_catalogue_lists_builtin_param_and_metric_columns(client, runs):
    columns = client.get("/api/runs/columns").json()["columns"]
    by_key = {c["key"]: c for c in columns}
    assert by_key["created"]["group"] == "builtin"
    assert by_key["param.learning_rate"] == {
        "key": "param.learning_rate",
        "label": "learning_rate",
        "group": "param",
        "type": "number",
    }
    assert by_key["param.augment"]["type"] == "bool"
    assert by_key["param.optimizer"]["type"] == "text"
    assert by_key["param.augmentation.zoom_range"]["type"] == "number"  # nested: dotted
    assert by_key["metric.finetune/val_accuracy"]["group"] == "metric"


def test_the_csv_is_wide_one_column_per_param_and_metric(client, runs):
    tag, ids = runs
    answer = client.get(
        "/api/runs/table.csv", params={"filter": f"tag = {tag}", "sort": "param.learning_rate"}
    )
    assert answer.status_code == 200
    assert 'filename="runs.csv"' in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [int(r["id"]) for r in rows][-2:] == sorted((ids[3], ids[7]), reverse=True)
    first = next(r for r in rows if int(r["id"]) == ids[0])
    assert first["param.learning_rate"] == "0.01" and first["param.augment"] == "true"
    assert first["param.optimizer"] == "adam"
    assert float(first["metric.finetune/val_accuracy"]) == pytest.approx(0.5)
    assert "key_params" not in first  # never every parameter packed in one cell


def test_every_download_is_named_with_the_run_id_and_kind(client, runs):
    run_id = make_run(artifacts={"classifier.keras": b"bytes"}, metrics={"finetune/loss": [1.0]})
    weights = client.get(f"/api/runs/{run_id}/artifacts/classifier.keras")
    expected = f'attachment; filename="run-{run_id}-finetune-classifier.keras"'
    assert weights.headers["content-disposition"] == expected
    metrics = client.get(f"/api/runs/{run_id}/metrics.csv")
    assert f'filename="run-{run_id}-finetune-metrics.csv"' in metrics.headers["content-disposition"]


@pytest.mark.parametrize(
    ("stem", "run_id", "kind", "name"),
    [
        ("classifier.keras", 12, "finetune", "run-12-finetune-classifier.keras"),
        ("trial-3/ae01.weights.h5", 4, "tune", "run-4-tune-trial-3-ae01.weights.h5"),
        ('a "quoted"\r\nname.csv', None, None, "a-quoted-name.csv"),
        ("", 1, "pretrain", "run-1-pretrain-download"),
        ("x" * 500 + ".keras", 7, "finetune", "run-7-finetune-" + "x" * 99 + ".keras"),
    ],
)
def test_download_names_are_safe_ascii_with_the_run(stem, run_id, kind, name):
    assert exports.download_name(stem, run_id=run_id, run_kind=kind) == name
    assert len(name) <= exports.MAX_NAME_CHARS


def test_views_refuse_too_many_value_columns():
    with pytest.raises(Exception, match="at most"):
        views.check_columns(",".join(f"param.p{i}" for i in range(views.MAX_VALUE_COLUMNS + 1)))


def test_an_ablation_run_shows_its_factor_and_arm_first():
    params = {"augment": False, "class_weights": True}
    tags = ["factor:class_weights", "arm:on", "seed:1"]
    assert views.key_params("finetune", params, tags)[0] == ["Class weights", "on"]
    assert views.key_params("finetune", params, ["arm:on"]) == views.key_params("finetune", params)
    assert views.key_params("finetune", params, ["factor:nope", "arm:on"])[0] != ["nope", "on"]


def test_the_total_is_counted_up_to_a_cap_and_says_when_more_match(client, runs, monkeypatch):
    tag, ids = runs
    monkeypatch.setattr(views, "TOTAL_CAP", 3)
    page = client.get("/api/runs/table", params={"filter": f"tag = {tag}", "limit": 2}).json()
    assert (page["total"], page["total_is_lower_bound"]) == (3, True)
    few = client.get("/api/runs/table", params={"filter": f"tag = {tag} and id = {ids[0]}"}).json()
    assert (few["total"], few["total_is_lower_bound"]) == (1, False)
