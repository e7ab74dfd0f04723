"""The runs pages and their JSON: table, queue panel, run page, curves, files, escaping."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from store.timeutil import utcnow
from tests.web.factories import (
    finetune_result,
    make_run,
    make_worker,
    reconstructions_npz,
)

XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture(scope="module")
def runs(client):
    """A small lab: a pretrain with reconstructions, finetunes off it, a failed one, a queue."""
    now = utcnow()
    pre = make_run(
        "pretrain",
        "succeeded",
        name="table-pre",
        metrics={
            "ae01/val_loss": [0.3, 0.2],
            "ae03/val_loss": [0.09, 0.05, 0.07],
            "ae01/epoch_seconds": [2.0, 2.0],
        },
        artifacts={"reconstructions.npz": reconstructions_npz(3), "ae01.weights.h5": b"h5"},
        tags=["table-test"],
        created_at=now - timedelta(minutes=30),
        started_at=now - timedelta(minutes=30),
        finished_at=now - timedelta(minutes=20),
    )
    good = make_run(
        "finetune",
        "succeeded",
        name="table-good",
        parent_run_id=pre,
        metrics={
            "finetune/val_accuracy": [0.5, 0.8, 0.7],
            "finetune/val_loss": [1.0, 0.6, 0.7],
            "finetune/loss": [1.2, 0.8, 0.5],
            "finetune/epoch_seconds": [3.0, 5.0, 4.0],
        },
        result=finetune_result(best_epoch=2, epochs_run=3),
        artifacts={"classifier.keras": b"keras"},
        tags=["table-test", "augment:on"],
        params={"augment": True, "epochs": 10},
        created_at=now - timedelta(minutes=10),
        started_at=now - timedelta(minutes=10),
        finished_at=now - timedelta(minutes=9),
    )
    weak = make_run(
        "finetune",
        "succeeded",
        name="table-weak",
        metrics={"finetune/val_accuracy": [0.3, 0.4]},
        tags=["table-test"],
        params={"encoder": "scratch"},
        created_at=now - timedelta(minutes=5),
        started_at=now - timedelta(minutes=5),
        finished_at=now - timedelta(minutes=1),
    )
    failed = make_run(
        "finetune",
        "failed",
        name="table-failed",
        error="Boom happened",
        traceback="Traceback (most recent call last):\nValueError: boom <b>",
        tags=["table-test"],
    )
    running = make_run(
        "finetune",
        "running",
        name=XSS,
        tags=["table-test"],
        progress={
            "stage": "finetune",
            "epoch": 2,
            "epochs": 4,
            "step": 5,
            "steps": 10,
            "images_per_sec": 100.0,
            "eta_seconds": 60.0,
        },
    )
    make_worker("table-worker", host="table-host", device="GPU:0", current_run_id=running)
    queued = [
        make_run(
            "finetune",
            "queued",
            name=f"table-queued-{i}",
            tags=["table-test"],
            params={"epochs": 10},
        )
        for i in range(2)
    ]
    return {
        "pre": pre,
        "good": good,
        "weak": weak,
        "failed": failed,
        "running": running,
        "queued": queued,
    }


def _table(client, **params):
    response = client.get("/api/runs/table", params={"tag": "table-test", **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_home_redirects_to_runs(client, runs):  # a store with runs: /welcome otherwise
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (302, 307) and response.headers["location"] == "/runs"


def test_runs_page_renders_names_escaped(client, runs):
    html = client.get("/runs").text
    assert "table-good" in html and ESCAPED in html
    assert XSS not in html
    html = client.get(f"/runs/{runs['running']}").text
    assert ESCAPED in html and XSS not in html


def test_runs_page_sorts_by_any_column_with_aria_sort_and_shows_its_value_columns(client, runs):
    html = client.get(
        "/runs",
        params={
            "tag": "table-test",
            "sort": "metric.finetune/val_accuracy",
            "order": "desc",
            "columns": "kind,metric.finetune/val_accuracy,param.augment",
        },
    ).text
    # every header sorts by a button; the sorted one says which way, the others "none"
    assert html.count('aria-sort="descending"') == 1
    assert '<th aria-sort="descending" data-col="metric.finetune/val_accuracy"' in html
    assert (
        'aria-sort="none"' in html
        and '<button type="button" class="sort" data-sort="name">' in html
    )
    # the value columns' cells, as runs_list.js draws them: whole numbers whole, flags as words
    good = html[html.index(f'data-id="{runs["good"]}"') :]
    good = good[: good.index("</tr>")]
    assert '<td class="num" data-col="metric.finetune/val_accuracy">0.8</td>' in good
    assert '<td data-col="param.augment">true</td>' in good
    weak = html[html.index(f'data-id="{runs["weak"]}"') :]
    assert html.index(f'data-id="{runs["good"]}"') < html.index(f'data-id="{runs["weak"]}"')
    assert '<td data-col="param.augment">false</td>' in weak[: weak.index("</tr>")]


def test_runs_page_says_why_a_filter_is_refused_next_to_it(client, runs):
    response = client.get("/runs", params={"filter": "metric.finetune/val_accuracy >="})
    assert response.status_code == 200
    html = response.text
    error = html[html.index('id="filter-error"') :]
    assert "hidden" not in error[: error.index(">")]
    assert "expected" in error[: error.index("</p>")]
    assert 'aria-invalid="true"' in html and "Fix the filter to see runs." in html
    assert 'data-status="' not in html[html.index('id="runs-body"') : html.index("</tbody>")]


def test_run_page_of_unknown_run_is_a_404_page(client):
    response = client.get("/runs/987654")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text and "not found" in response.text.lower()


def test_run_pages_render_for_every_kind_and_status(client, runs):
    for key in ("pre", "good", "failed", "running"):
        assert client.get(f"/runs/{runs[key]}").status_code == 200, key
    failed = client.get(f"/runs/{runs['failed']}").text
    assert "Boom happened" in failed and "ValueError: boom &lt;b&gt;" in failed
    good = client.get(f"/runs/{runs['good']}").text
    assert f"/runs/{runs['pre']}" in good  # lineage: its pretrain
    assert f"/api/runs/{runs['good']}/artifacts/classifier.keras" in good
    assert f"/runs/new?clone={runs['good']}" in good
    pre = client.get(f"/runs/{runs['pre']}").text
    assert f"/runs/{runs['good']}" in pre  # lineage: the runs that used it
    assert "reconstructions.png" in pre and "ae02" in pre


def test_table_rows_carry_computed_fields(client, runs):
    rows = {r["id"]: r for r in _table(client, limit=500)["items"]}
    good = rows[runs["good"]]
    assert good["best"]["value"] == pytest.approx(0.8) and good["best"]["epoch"] == 2
    assert ["augment", "on"] in good["key_params"] and good["dataset"] == "demo-tiny"
    assert good["duration_seconds"] == pytest.approx(60, abs=1)
    pre = rows[runs["pre"]]
    # A pretrain keeps each stage's last epoch (no early stopping): 0.07, not the 0.05 of
    # an epoch whose weights are gone.
    assert pre["best"]["label"].startswith("ae03") and pre["best"]["value"] == pytest.approx(0.07)
    assert pre["best"]["epoch"] == 3
    running = rows[runs["running"]]
    assert running["progress"]["fraction"] == pytest.approx((1 + 0.5) / 4)


def test_table_filters(client, runs):
    assert {r["status"] for r in _table(client, status="queued")["items"]} == {"queued"}
    assert [r["id"] for r in _table(client, kind="pretrain")["items"]] == [runs["pre"]]
    assert [r["id"] for r in _table(client, tag="augment:on")["items"]] == [runs["good"]]
    assert [r["id"] for r in _table(client, q="TABLE-WEAK")["items"]] == [runs["weak"]]
    assert _table(client, dataset="no-such-set")["total"] == 0
    assert _table(client, q="%")["total"] == 0  # wildcards are literal


def test_table_sorts_and_pages(client, runs):
    by_best = [r["id"] for r in _table(client, sort="best")["items"]]
    assert by_best[:3] == [runs["good"], runs["weak"], runs["pre"]]  # accuracy, then loss
    by_duration = [r["id"] for r in _table(client, sort="duration", kind="finetune")["items"]]
    assert by_duration.index(runs["weak"]) < by_duration.index(runs["good"])
    oldest = _table(client, sort="created", order="asc")["items"][0]["id"]
    assert oldest == runs["pre"]
    first, second = _table(client, limit=2), _table(client, limit=2, offset=2)
    assert first["total"] == second["total"] == 7
    assert not {r["id"] for r in first["items"]} & {r["id"] for r in second["items"]}
    assert client.get("/api/runs/table", params={"sort": "nonsense"}).status_code == 422


def test_queue_panel_shape(client, runs):
    queue = client.get("/api/queue").json()
    assert set(queue) >= {"workers", "running", "queued", "now"}
    worker = next(w for w in queue["workers"] if w["name"] == "table-worker")
    assert worker["host"] == "table-host" and worker["current_run_id"] == runs["running"]
    assert worker["current_run_name"] == XSS  # JSON carries the raw name; pages escape it
    ids = [q["id"] for q in queue["queued"]]
    assert ids.index(runs["queued"][0]) < ids.index(runs["queued"][1])  # queue order
    entry = next(q for q in queue["queued"] if q["id"] == runs["queued"][0])
    assert {"estimated_seconds", "starts_at", "finishes_at", "starts_in_seconds"} <= set(entry)
    # Nothing measured images/s yet: the stacked finetune's default 70 img/s, 10 epochs of
    # demo-tiny's 60 images less 6 for validation (at 3x the speed) (backend/runs/eta.py).
    assert entry["estimated_seconds"] == pytest.approx(10 * (54 / 70 + 6 / (3 * 70)))
    assert entry["estimate_source"] == "default"


def test_curves_are_downsampled_keeping_first_last_min_max(client):
    values = [1.0 + (i % 97) / 100 for i in range(5000)]
    values[1234], values[3210] = -3.0, 9.0
    run_id = make_run(
        "finetune",
        "succeeded",
        metrics={"finetune/loss": values},
        result=finetune_result(best_epoch=4000),
    )
    data = client.get(f"/api/runs/{run_id}/curves", params={"max_points": 500}).json()
    trace = data["figure"]["data"][0]
    assert len(trace["x"]) <= 500 and data["last_step"] == 5000
    assert trace["x"][0] == 1 and trace["x"][-1] == 5000
    assert min(trace["y"]) == -3.0 and max(trace["y"]) == 9.0
    assert 1235 in trace["x"] and 3211 in trace["x"]
    shapes = data["figure"]["layout"].get("shapes", [])
    assert any(s.get("x0") == 4000 for s in shapes)  # early stopping's best epoch


def test_confusion_and_reconstructions_only_where_stored(client, runs):
    confusion = client.get(f"/api/runs/{runs['good']}/confusion")
    assert confusion.status_code == 200
    body = confusion.json()
    assert body["figure"]["data"][0]["type"] == "heatmap" and "airplane" in body["per_class"]
    assert client.get(f"/api/runs/{runs['weak']}/confusion").status_code == 404
    png = client.get(f"/api/runs/{runs['pre']}/reconstructions.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    from PIL import Image

    image = Image.open(io.BytesIO(png.content))
    assert image.width > 3 * 32 * 3 and image.height > 4 * 32 * 3  # 3 images x 4 rows, upscaled
    assert client.get(f"/api/runs/{runs['good']}/reconstructions.png").status_code == 404
    assert client.get("/api/runs/987654/confusion").status_code == 404


def test_metrics_csv_and_json(client, runs):
    response = client.get(f"/api/runs/{runs['good']}/metrics.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert {r["stage"] for r in rows} == {"finetune"}
    assert float(rows[1]["val_accuracy"]) == pytest.approx(0.8)
    assert float(rows[2]["loss"]) == pytest.approx(0.5)
    data = client.get(f"/api/runs/{runs['good']}/metrics.json").json()
    assert data["series"]["finetune/val_loss"]["values"] == [1.0, 0.6, 0.7]
    assert data["summary"]["finetune/val_accuracy"]["best_step"] == 2


def test_queue_panel_says_why_a_queued_run_cannot_start_instead_of_0_s(client, runs):
    from store.db import session_scope
    from store.runs.models import Run

    make_worker("idle-worker", current_run_id=None)
    parent = make_run("pretrain", "queued", name="parent-waiting")
    child = make_run("finetune", "queued", name="child-waiting", parent_run_id=parent)
    unsent = make_run("finetune", "queued", name="never-sent")
    with session_scope() as session:
        session.get(Run, unsent).sent_at = None
    entries = {q["id"]: q for q in client.get("/api/queue").json()["queued"]}
    assert entries[child]["waiting"] == f"waits for pretrain run #{parent}"
    assert "sending" in entries[unsent]["waiting"]
    for run_id in (child, unsent):
        assert entries[run_id]["blocked"] and entries[run_id]["starts_in_seconds"] is None
    page = client.get("/runs").text
    assert f"waits for pretrain run #{parent}" in page
    with session_scope() as session:  # tidy: these must not sit in other tests' queue
        for run_id in (parent, child, unsent):
            session.get(Run, run_id).status = "cancelled"


def test_run_page_lists_attempts_and_offers_resume_or_start_over(client):
    from store.db import session_scope
    from store.runs import attempts, checkpoints, upkeep
    from store.runs.models import Run

    run_id = make_run("finetune", "running", name="twice-tried", worker_host="first:1")
    with session_scope() as session:
        session.get(Run, run_id).heartbeat_at = utcnow() - timedelta(seconds=600)
    with session_scope() as session:
        reaped = upkeep.reap_stale(session=session, stale_after=60)
        assert [r for r in reaped if r[0] == run_id] == [(run_id, "queued")]  # others' theirs
    with session_scope() as session:
        attempts.claim(
            session=session, run_id=run_id, worker_host="second:2", device="CPU", versions={}
        )
        checkpoints.save(
            session=session, run_id=run_id, attempt=2, data=b"x", stage="finetune", epoch=3
        )
        attempts.finish(session=session, run_id=run_id, attempt=2, status="failed", error="boom")
    rows = client.get(f"/api/runs/{run_id}/attempts").json()
    assert [(r["number"], r["outcome"], r["worker_host"]) for r in rows] == [
        (1, "lost", "first:1"),
        (2, "failed", "second:2"),
    ]
    page = client.get(f"/runs/{run_id}").text
    assert "Attempts" in page and "lost" in page and "no heartbeat" in page
    assert "after epoch 3 of finetune" in page and ">Resume</button>" in page
    assert 'id="btn-restart"' in page
    again = client.post(f"/api/runs/{run_id}/requeue", params={"fresh": "true"})
    assert again.status_code == 200 and again.json()["status"] == "queued"
    with session_scope() as session:
        assert session.get(Run, run_id).fresh_start is True
        session.get(Run, run_id).status = "cancelled"
