"""The runs table's basics: first-run page, columns, the best column's sort, the archive
filter, CSV export and bulk actions (cancel, tag, archive, delete), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

import store.models  # noqa: F401  (every table in the metadata)
from backend.runs import table_csv
from store.db import session_scope
from store.runs.models import Run, RunGroup
from store.timeutil import utcnow
from tests.web.factories import (
    finetune_result,
    make_group,
    make_run,
    make_worker,
    owned_rows,
    table_sizes,
)


def test_an_empty_store_opens_on_the_first_run_page_and_a_used_one_on_the_runs_table(client):
    assert client.get("/api/runs", params={"archived": "include"}).json()["total"] == 0
    first = client.get("/", follow_redirects=False)
    assert first.status_code == 307 and first.headers["location"] == "/welcome"
    page = client.get("/welcome")
    assert page.status_code == 200 and 'id="launch-demo"' in page.text
    assert "demo-tiny" in page.text and "is not in this store" in page.text  # no "demo" here
    make_run("finetune", name="first-ever", tags=["welcome-test"])
    later = client.get("/", follow_redirects=False)
    assert later.status_code == 307 and later.headers["location"] == "/runs"
    assert client.get("/welcome").status_code == 200  # still reachable


def test_the_demo_queues_a_quick_pretrain_and_an_augmentation_study_on_it(client):
    answer = client.post("/api/demo", json={"dataset": "demo-tiny"})
    assert answer.status_code == 201, answer.text
    demo = answer.json()
    assert demo["url"] == f"/runs/{demo['pretrain_id']}" and len(demo["run_ids"]) == 5
    pretrain = client.get(f"/api/runs/{demo['pretrain_id']}").json()
    params = pretrain["params"]
    assert pretrain["kind"] == "pretrain" and params["bn_momentum"] == 0.9
    assert {params[s]["epochs"] for s in ("ae01", "ae02", "ae03")} == {1}
    study = client.get("/api/runs", params={"group_id": demo["group_id"]}).json()["items"]
    assert len(study) == 4 and {r["parent_run_id"] for r in study} == {demo["pretrain_id"]}
    assert {r["params"]["augment"] for r in study} == {False, True}
    assert {r["params"]["seed"] for r in study} == {0, 1}
    assert {r["params"]["epochs"] for r in study} == {3}
    cancel = client.post("/api/runs/bulk", json={"action": "cancel", "ids": demo["run_ids"]})
    assert cancel.json()["done"] == 5  # the queue is left as it was


def test_a_demo_on_a_data_set_that_does_not_exist_queues_nothing(client):
    before = client.get("/api/runs", params={"archived": "include"}).json()["total"]
    answer = client.post("/api/demo", json={"dataset": "no-such-set"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][-1] == "dataset"
    assert client.get("/api/runs", params={"archived": "include"}).json()["total"] == before


def test_pages_name_an_icon_and_the_old_address_of_one_answers(client):
    assert 'rel="icon" href="/static/favicon.svg?v=' in client.get("/runs").text
    old = client.get("/favicon.ico", follow_redirects=False)
    assert old.status_code == 301 and old.headers["location"] == "/static/favicon.svg"
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


# --- columns, the best column, the archive filter ---------------------------------------


@pytest.fixture(scope="module")
def lab(client):
    """Runs of every kind of score, in a group, with a parent and test results."""
    now = utcnow()
    group = make_group("ablation_study", name="cols-study")
    full = make_run("pretrain", metrics={"ae03/val_loss": [0.2, 0.1]}, tags=["cols"])
    partial = make_run("pretrain", "cancelled", metrics={"ae01/val_loss": [0.01]}, tags=["cols"])
    strong = make_run(
        "finetune",
        metrics={"finetune/val_accuracy": [0.9]},
        result=finetune_result(),
        parent_run_id=full,
        group_id=group,
        tags=["cols"],
        finished_at=now - timedelta(minutes=1),
    )
    weak = make_run("finetune", metrics={"finetune/val_accuracy": [0.4]}, tags=["cols"])
    loss_only = make_run("finetune", metrics={"finetune/val_loss": [0.001]}, tags=["cols"])
    unscored = make_run("finetune", "queued", tags=["cols"])
    return {
        "group": group,
        "full": full,
        "partial": partial,
        "strong": strong,
        "weak": weak,
        "loss_only": loss_only,
        "unscored": unscored,
    }


def table(client, **params) -> dict:
    answer = client.get("/api/runs/table", params={"tag": "cols", "limit": 500, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_rows_carry_every_pickable_column(client, lab):
    rows = {r["id"]: r for r in table(client)["items"]}
    strong = rows[lab["strong"]]
    assert strong["test_accuracy"] == pytest.approx(0.8)
    assert strong["balanced_accuracy"] == pytest.approx(0.8)
    assert (
        strong["parent_run_id"] == lab["full"]
        and strong["parent_name"] == f"pretrain #{lab['full']}"
    )
    assert strong["group"] == {"id": lab["group"], "name": "cols-study", "kind": "ablation_study"}
    assert strong["finished_at"] and strong["launched_by"] is None
    assert rows[lab["unscored"]]["finished_at"] is None
    assert rows[lab["full"]]["best"]["label"] == "ae03 val loss"
    assert rows[lab["full"]]["best"]["goal"] == "min"


def test_the_runs_page_renders_every_column_with_the_default_ones_shown(client, lab):
    html = client.get("/runs", params={"tag": "cols"}).text
    assert 'data-col="finished"' in html and 'data-col="test_accuracy"' in html
    assert '<td class="num" data-col="test_accuracy" hidden>80.0%</td>' in html
    assert "val acc ↑" in html and "ae03 val loss ↓" in html
    assert (
        'id="csv-export" href="/api/runs/table.csv?tag=cols&amp;sort=created&amp;order=desc"'
        in html
    )


def test_sorting_by_best_never_ranks_a_loss_against_an_accuracy(client, lab):
    best_first = [r["id"] for r in table(client, sort="best", order="desc")["items"]]
    # accuracies best first; then pretrains on ae03, on ae01; finetunes on val loss; unscored
    expected = ["strong", "weak", "full", "partial", "loss_only", "unscored"]
    assert best_first == [lab[k] for k in expected]
    worst_first = [r["id"] for r in table(client, sort="best", order="asc")["items"]]
    assert worst_first == [
        lab[k] for k in ["weak", "strong", "full", "partial", "loss_only", "unscored"]
    ]


def test_archived_runs_show_only_when_asked_for(client, lab):
    answer = client.post("/api/runs/bulk", json={"action": "archive", "ids": [lab["weak"]]})
    assert answer.json()["results"] == [
        {"id": lab["weak"], "ok": True, "status": "succeeded", "archived": True, "tags": ["cols"]}
    ]
    assert lab["weak"] not in [r["id"] for r in table(client)["items"]]
    assert lab["weak"] not in [r["id"] for r in client.get("/api/runs?tag=cols").json()["items"]]
    assert lab["weak"] in [r["id"] for r in table(client, archived="include")["items"]]
    assert [r["id"] for r in table(client, archived="only")["items"]] == [lab["weak"]]
    html = client.get("/runs", params={"tag": "cols", "archived": "include"}).text
    assert '<span class="tag archived">archived</span>' in html
    assert 'value="include" selected' in html
    client.post("/api/runs/bulk", json={"action": "unarchive", "ids": [lab["weak"]]})
    assert lab["weak"] in [r["id"] for r in table(client)["items"]]


# --- CSV export -------------------------------------------------------------------------

HOSTILE = ['=HYPERLINK("http://x.test","click")', "+1+2", "-3", "@SUM(A1)", "\tTAB"]


def read_csv(client, **params) -> list[dict]:
    answer = client.get("/api/runs/table.csv", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="runs.csv"' in answer.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(answer.text, newline="")))


def test_csv_quotes_text_and_defuses_formulas(client):
    awkward = 'comma, "quotes" and\na new line'
    ids = [make_run("finetune", name=name, tags=["csv-guard", name]) for name in HOSTILE]
    plain = make_run(
        "finetune",
        name=awkward,
        tags=["csv-guard", "x"],
        metrics={"finetune/val_accuracy": [0.5, 0.75]},
        result=finetune_result(),
    )
    rows = {int(r["id"]): r for r in read_csv(client, tag="csv-guard")}
    assert set(rows) == {*ids, plain}
    for run_id, name in zip(ids, HOSTILE, strict=True):
        assert rows[run_id]["name"] == "'" + name  # a spreadsheet shows it, never runs it
        assert rows[run_id]["tags"] == f"csv-guard; {name}"  # the joined cell starts safely
    row = rows[plain]
    assert row["name"] == awkward  # quoted, read back whole
    assert (row["best_metric"], row["best_value"], row["best_epoch"]) == ("val acc", "0.75", "2")
    assert row["test_accuracy"] == "0.8" and row["status"] == "succeeded"
    assert row["archived"] == "no" and row["dataset"] == "demo-tiny"
    header = list(rows[plain])
    assert header[: len(table_csv.FIELDS)] == list(table_csv.FIELDS)
    wide = header[len(table_csv.FIELDS) :]  # one column per parameter and per metric
    assert "param.augment" in wide and "metric.finetune/val_accuracy" in wide
    assert all(key.startswith(("param.", "metric.")) for key in wide)
    assert row["metric.finetune/val_accuracy"] == "0.75"


def test_csv_has_every_matching_row_in_the_tables_order_not_one_page(client):
    for i in range(53):
        make_run("finetune", "queued", name=f"csv-many-{i:02d}", tags=["csv-many"])
    make_run("pretrain", "queued", name="csv-many-pretrain", tags=["csv-many"])
    for sort, order in [("name", "asc"), ("created", "desc")]:
        params = {"tag": "csv-many", "kind": "finetune", "sort": sort, "order": order}
        rows = read_csv(client, **params)
        page = client.get("/api/runs/table", params={**params, "limit": 500}).json()
        assert [int(r["id"]) for r in rows] == [r["id"] for r in page["items"]]
        assert len(rows) == 53 > client.get("/api/runs/table", params=params).json()["limit"]
    assert [r["name"] for r in read_csv(client, tag="csv-many", q="pretrain")] == [
        "csv-many-pretrain"
    ]


def test_csv_refuses_more_rows_than_its_bound(client, monkeypatch):
    make_run("finetune", "queued", tags=["csv-bound"])
    make_run("finetune", "queued", tags=["csv-bound"])
    monkeypatch.setattr(table_csv, "MAX_ROWS", 1)
    answer = client.get("/api/runs/table.csv", params={"tag": "csv-bound"})
    assert answer.status_code == 422 and "narrow the filters" in answer.text


# --- bulk actions -----------------------------------------------------------------------


def bulk(client, action: str, ids: list[int], **extra) -> dict:
    answer = client.post("/api/runs/bulk", json={"action": action, "ids": ids, **extra})
    assert answer.status_code == 200, answer.text
    return {r["id"]: r for r in answer.json()["results"]}


def test_bulk_cancel_reports_each_run_and_refuses_what_cannot_be_cancelled(client):
    queued = make_run("finetune", "queued", tags=["bulk"])
    running = make_run("finetune", "running", tags=["bulk"])
    done = make_run("finetune", tags=["bulk"])
    answer = client.post(
        "/api/runs/bulk", json={"action": "cancel", "ids": [queued, running, done, 10**9]}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert (body["done"], body["refused"]) == (2, 2)
    results = {r["id"]: r for r in body["results"]}
    assert results[queued]["status"] == "cancelled"
    assert client.get(f"/api/runs/{running}").json()["cancel_requested"] is True
    assert not results[done]["ok"] and "succeeded already" in results[done]["error"]
    assert results[10**9] == {"id": 10**9, "ok": False, "error": f"run {10**9} does not exist"}


def test_bulk_tags_are_added_and_removed_once(client):
    a = make_run("finetune", tags=["bulk-tag"])
    b = make_run("finetune", tags=["bulk-tag", "keep"])
    results = bulk(client, "tag", [a, b, b], tag="  keep ")
    assert [results[a]["tags"], results[b]["tags"]] == [["bulk-tag", "keep"], ["bulk-tag", "keep"]]
    results = bulk(client, "untag", [a, b], tag="keep")
    assert results[a]["tags"] == results[b]["tags"] == ["bulk-tag"]
    too_long = bulk(client, "tag", [a], tag="t" * 999)[a]
    assert not too_long["ok"] and "STACKLAB_MAX_TAG_LENGTH" in too_long["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"action": "tag", "ids": [1]},  # which tag?
        {"action": "tag", "ids": [1], "tag": "   "},
        {"action": "explode", "ids": [1]},
        {"action": "cancel", "ids": []},
        {"action": "cancel", "ids": list(range(1, 502))},  # bounded
        {"action": "delete", "ids": [0]},
        {"action": "delete", "ids": [1], "extra": 1},
    ],
)
def test_bulk_requests_out_of_bounds_are_refused_whole(client, body):
    assert client.post("/api/runs/bulk", json=body).status_code == 422


def test_archiving_a_live_run_is_refused(client):
    running = make_run("finetune", "running")
    result = bulk(client, "archive", [running])[running]
    assert not result["ok"] and "once it has finished" in result["error"]


# --- delete -----------------------------------------------------------------------------


def test_bulk_delete_removes_the_runs_rows_and_files_and_nothing_else(client):
    group = make_group("ablation_study", name="del-study")
    files = {"classifier.weights.h5": b"w" * 2000, "predictions.npz": b"p"}
    pretrain = make_run("pretrain", metrics={"ae01/val_loss": [0.5, 0.4]}, artifacts=files)
    child = make_run(
        "finetune",
        "failed",
        parent_run_id=pretrain,
        group_id=group,
        metrics={"finetune/val_accuracy": [0.5]},
        artifacts=files,
    )
    sibling = make_run("finetune", group_id=group, metrics={"finetune/val_loss": [1.0]})
    with session_scope() as session:
        session.get(Run, sibling).source_run_id = child
    make_worker("del-worker", current_run_id=child)
    doomed = [pretrain, child]
    assert owned_rows(doomed)["metrics.run_id"] == 3
    assert owned_rows(doomed)["artifacts.run_id"] == 4
    kept_before = owned_rows([sibling])
    params = owned_rows(doomed)["run_params.run_id"]  # their parameters as table columns
    assert params > 0
    sizes = table_sizes()

    results = bulk(client, "delete", [child, pretrain])

    assert results == {child: {"id": child, "ok": True}, pretrain: {"id": pretrain, "ok": True}}
    assert set(owned_rows(doomed).values()) == {0}
    assert owned_rows([sibling]) == kept_before
    # A deleted run whose attempt was still open ends it, and an ended attempt is told to
    # the webhooks' outbox (store/notify): those events may be written, nothing else.
    changed = {
        t: sizes[t] - n
        for t, n in table_sizes().items()
        if n != sizes[t] and not (t == "notify_events" and n > sizes[t])
    }
    assert changed == {
        "runs": 2,
        "run_params": params,
        "metrics": 3,
        "metric_summaries": 2,
        "run_attempts": 2,
        "artifacts": 4,
        "artifact_chunks": 4,
    }
    for run_id in doomed:
        assert client.get(f"/api/runs/{run_id}").status_code == 404
        assert client.get(f"/api/runs/{run_id}/artifacts/predictions.npz").status_code == 404
    with session_scope() as session:
        assert session.get(Run, sibling).source_run_id is None
        assert session.get(RunGroup, group) is not None  # the sibling still belongs to it


def test_bulk_delete_refuses_live_runs_and_a_pretrain_others_still_use(client):
    running = make_run("finetune", "running")
    pretrain = make_run("pretrain")
    user = make_run("finetune", parent_run_id=pretrain)
    spare = make_run("finetune")
    body = client.post(
        "/api/runs/bulk", json={"action": "delete", "ids": [running, pretrain, spare]}
    ).json()
    results = {r["id"]: r for r in body["results"]}
    assert (body["done"], body["refused"]) == (1, 2)
    assert "cancel it" in results[running]["error"]
    assert f"used by run #{user}" in results[pretrain]["error"]
    assert client.get(f"/api/runs/{spare}").status_code == 404
    assert client.get(f"/api/runs/{pretrain}").status_code == 200
    assert bulk(client, "delete", [pretrain, user])[pretrain]["ok"]  # with its user: fine
