"""Big answers stream in bounded memory (issue 19, item 4): the runs table as CSV over
10,000 runs, a run's metrics.csv, the experiment report; at most max_concurrent_exports at
once (503 with Retry-After past it); the same bytes as before, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
import threading
import uuid

import pytest
from sqlalchemy import delete, insert, select

import store.models  # noqa: F401  (every table in the metadata)
from backend import exports
from backend.runs import detail, table_csv, views
from jobspec import kinds
from jobspec.status import RunStatus
from store.datasets import service as datasets_service
from store.datasets.models import DatasetRecord
from store.db import session_scope
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.models import Run
from store.runs.schemas import RunFilter
from store.settings import get_settings
from store.timeutil import utcnow
from tests.web.downloads import Download, peak_of
from tests.web.factories import finetune_result, make_run
from tests.web.report_factories import make_pretrain

MANY = 10_000
# What streaming table.csv over MANY runs may hold at its peak (Python allocations, traced).
# The CSV is ~9 MB; holding its rows whole (as the export did before) peaks far above.
STREAM_BOUND = 16 * 2**20


# --- Runs owned by a test, written in bulk ---------------------------------------------


def bulk_runs(n: int, tag: str) -> list[int]:
    """n succeeded finetunes tagged `tag`, with long names, tags and errors, in one insert."""
    now = utcnow()
    params = kinds.get("finetune").params().model_dump(mode="json")
    with session_scope() as session:
        dataset_id = datasets_service.get_by_name(session, "demo-tiny").id
        rows = [
            {
                "kind": "finetune",
                "name": f"run {i} " + "n" * 180,
                "tags": [tag, "t" * 150, "u" * 150, "v" * 150],
                "status": RunStatus.SUCCEEDED,
                "params": params,
                "seed": i,
                "dataset_id": dataset_id,
                "created_at": now,
                "started_at": now,
                "finished_at": now,
                "result": finetune_result(),
                "error": "e" * 300,
            }
            for i in range(n)
        ]
        session.execute(insert(Run), rows)
    with session_scope() as session:
        return list(session.scalars(runs_service.filtered(select(Run.id), RunFilter(tag=tag))))


def drop_runs(ids: list[int]) -> None:
    with session_scope() as session:
        for start in range(0, len(ids), 500):
            session.execute(delete(Run).where(Run.id.in_(ids[start : start + 500])))


def held_whole(run_filter_tag: str, sort: str = "created") -> str:
    """The runs CSV as the export wrote it before streaming (its code, kept here to compare
    bytes and memory with): every row read in one query and session, the text joined."""
    with session_scope() as session:
        query = select(Run, DatasetRecord.name).join(
            DatasetRecord, DatasetRecord.id == Run.dataset_id
        )
        query = runs_service.filtered(query, RunFilter(tag=run_filter_tag))
        query = views._sorted(session, query, sort, "desc")
        rows = session.execute(query.limit(table_csv.MAX_ROWS + 1)).all()
        columns = [c["key"] for c in views.catalogue(session)["columns"] if c["group"] != "builtin"]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*table_csv.FIELDS, *columns])
        for start in range(0, len(rows), table_csv.CHUNK):
            batch = rows[start : start + table_csv.CHUNK]
            cells = views.values_of(session, [run.id for run, _ in batch], columns)
            for row in views.rows_of(session, batch):
                wide = [cells[row["id"]].get(key) for key in columns]
                writer.writerow([table_csv.safe(v) for v in [*table_csv.record(row), *wide]])
        return out.getvalue()


@pytest.fixture(scope="module")
def many(client, app_env):
    """MANY runs of the test's own tag (SQLite: measured in process; the same code reads
    PostgreSQL, whose part of the work runs in its own server)."""
    if "DATABASE_URL" in app_env:
        pytest.skip("measured on SQLite, in process")
    tag = f"many-{uuid.uuid4().hex[:8]}"
    ids = bulk_runs(MANY, tag)
    assert len(ids) == MANY
    yield tag
    drop_runs(ids)


def test_table_csv_over_10000_runs_streams_in_bounded_memory(client, many):
    answer = Download(client.app, "/api/runs/table.csv", f"tag={many}")
    streamed = peak_of(answer)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.head.startswith(b"id,name,kind,status")
    whole: list[str] = []
    before = peak_of(lambda: whole.append(held_whole(many)))
    print(
        f"table.csv of {MANY:,} runs, {answer.size / 2**20:.1f} MB: streamed peak "
        f"{streamed / 2**20:.1f} MB; held whole (as before) {before / 2**20:.1f} MB"
    )
    assert answer.size == len(whole[0].encode()) > 2**23  # the same bytes, and many
    assert before > 4 * STREAM_BOUND  # holding the rows whole, as the export did, is far past
    assert streamed < STREAM_BOUND


# --- The same bytes as before --------------------------------------------------------


def test_table_csv_is_the_same_text_as_when_it_was_held_whole(client):
    tag = f"same-{uuid.uuid4().hex[:8]}"
    for i in range(7):
        make_run(
            "finetune",
            name=f'=odd, "{i}"\nline',
            tags=[tag, f"t{i}"],
            metrics={"finetune/val_accuracy": [0.5, 0.6 + i / 100]},
            result=finetune_result(),
        )
    make_run("pretrain", "running", tags=[tag], progress={"epoch": 1, "epochs": 2})
    answer = client.get("/api/runs/table.csv", params={"tag": tag, "sort": "best"})
    assert answer.status_code == 200
    assert answer.text.count("\r\n") > 8
    # by batches of 3 runs: each batch read in a session of its own, same text
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(table_csv, "CHUNK", 3)
        batched = client.get("/api/runs/table.csv", params={"tag": tag, "sort": "best"})
    assert without_durations(batched.text) == without_durations(answer.text)
    assert without_durations(answer.text) == without_durations(held_whole(tag, sort="best"))


def without_durations(text: str) -> list[list[str]]:
    """The CSV's cells, less a running run's duration (it grows between two reads)."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    at = rows[0].index("duration_seconds")
    return [row[:at] + row[at + 1 :] if row[3] == "running" else row for row in rows]


def metrics_csv_as_before(run_id: int) -> str:
    """metrics.csv as it was written before it streamed: every series read at once."""
    with session_scope() as session:
        series = metrics_service.series(session, run_id)
    names = sorted({key.rsplit("/", 1)[1] for key in series})
    rows: dict[tuple[str, int], dict] = {}
    for key, points in series.items():
        stage, name = key.rsplit("/", 1)
        for step, value in points:
            rows.setdefault((stage, step), {})[name] = value
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["stage", "epoch", *names])
    for (stage, step), values in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0])):
        cells = ("" if values.get(n) is None else repr(float(values[n])) for n in names)
        writer.writerow([stage, step, *cells])
    return out.getvalue()


def test_metrics_csv_streams_epochs_in_batches_with_the_same_text(client):
    metrics = {
        "ae01/loss": [0.9, 0.5, 0.4],
        "ae01/val_loss": [1.0, 0.6],
        "ae02/loss": [0.8, 0.7, 0.6, 0.55],
        "trial-2/val_accuracy": [0.1, 0.2],
        "trial-10/val_accuracy": [0.3],
        "trial-1/accuracy": [0.25, 0.5, 0.75, 0.8, 0.9],
    }
    run_id = make_run("pretrain", metrics=metrics)
    expected = metrics_csv_as_before(run_id)
    assert expected.count("\n") == 1 + 3 + 4 + 5 + 2 + 1  # a row per (stage, epoch)
    assert client.get(f"/api/runs/{run_id}/metrics.csv").text == expected
    for size in (1, 2, 3, 7):  # one epoch per batch at least, whatever the batch size
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(detail, "METRICS_CSV_BATCH", size)
            assert client.get(f"/api/runs/{run_id}/metrics.csv").text == expected
    empty = make_run("pretrain")
    assert client.get(f"/api/runs/{empty}/metrics.csv").text == "stage,epoch\n"
    assert client.get("/api/runs/99999999/metrics.csv").status_code == 404


# --- At most max_concurrent_exports at once ---------------------------------------------


def test_one_export_past_the_cap_is_refused_at_once_and_slots_come_back(client):
    cap = get_settings().max_concurrent_exports
    tag = f"cap-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        make_run("finetune", name=f"cap {i}", tags=[tag])
    pretrain = make_pretrain(name="cap-report")
    release = threading.Event()
    held = [
        Download(client.app, "/api/runs/table.csv", f"tag={tag}", hold=release) for _ in range(cap)
    ]
    threads = [threading.Thread(target=d, daemon=True) for d in held]
    try:
        for thread in threads:
            thread.start()
        for download in held:
            assert download.started.wait(60), "an export never started"
        assert exports.SLOTS.busy == cap
        refused = client.get("/api/runs/table.csv", params={"tag": tag})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == str(exports.RETRY_AFTER_SECONDS)
        assert "STACKLAB_MAX_CONCURRENT_EXPORTS" in refused.json()["detail"]
        run_id = make_run("finetune", metrics={"finetune/loss": [1.0]})
        assert client.get(f"/api/runs/{run_id}/metrics.csv").status_code == 503
        assert client.get(f"/api/runs/{run_id}/metrics.json").status_code == 200  # not an export
        page = client.get(f"/experiments/{pretrain}/report.html")  # a page: the error page
        assert page.status_code == 503 and "retry-after" in page.headers
        assert "STACKLAB_MAX_CONCURRENT_EXPORTS" in page.text
        assert client.get("/api/runs/99999999/metrics.csv").status_code == 404  # checks first
    finally:
        release.set()
        for thread in threads:
            thread.join(60)
    assert all(d.status == 200 and d.done.is_set() for d in held)
    assert len({d.size for d in held}) == 1 and held[0].head.count(b"\r\n") == 4
    assert exports.SLOTS.busy == 0
    assert client.get("/api/runs/table.csv", params={"tag": tag}).status_code == 200


def test_a_client_that_goes_away_gives_its_slot_back(client, many):
    gone = Download(client.app, "/api/runs/table.csv", f"tag={many}", leave=True)()
    # It stopped long before the end: a batch or two of table_csv.CHUNK wide rows, of a file
    # of more than 8 MiB (the test above).
    assert gone.status == 200 and 0 < gone.size < 2**21
    assert exports.SLOTS.busy == 0


def test_the_report_streams_the_text_it_rendered_whole(client):
    from backend.reports import export

    pretrain = make_pretrain(name="stream-report", notes="*notes* <b>x</b>")
    answer = client.get(f"/experiments/{pretrain}/report.html")
    assert answer.status_code == 200
    with session_scope() as session:
        chunks, name = export.report_chunks(session=session, run_id=pretrain)
        pieces = list(chunks)
    assert len(pieces) > 10  # written piece by piece
    assert stamp_out(answer.text) == stamp_out("".join(pieces))
    assert f'filename="{name}"' in answer.headers["content-disposition"]
    assert exports.SLOTS.busy == 0


def stamp_out(html: str) -> str:
    """The report less its time of export (the two renders may fall in different minutes)."""
    return re.sub(r"<dt>Exported</dt><dd>[^<]*</dd>", "", html)
