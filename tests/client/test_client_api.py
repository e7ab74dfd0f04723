"""The client against the real app in this process (FastAPI's TestClient as its
transport), on SQLite and on PostgreSQL + Redis: launches, refusals, cancel, re-queue,
clone, and the runs table as a DataFrame with exactly the CSV export's shape. No worker:
runs stay queued. Each test tags its runs and reads only those (the module's database is
shared)."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from client import errors
from client.api import Client
from jobspec.status import RunStatus

DATASET = "demo-tiny"  # registered by tests/fixtures/app.py


@pytest.fixture(scope="module")
def lab(client):
    """The Python client speaking to the module's app through the TestClient's transport."""
    return Client("http://testserver", transport=client._transport)


@pytest.fixture
def tag() -> str:
    return f"client-{uuid.uuid4().hex[:8]}"


def test_launch_with_a_preset_queues_the_presets_values_under_the_params_given(lab, client, tag):
    run = lab.launch("pretrain", DATASET, {"ae01": {"epochs": 1}}, preset="quick", tags=[tag])
    assert run.status is RunStatus.QUEUED
    assert run.params == client.get(f"/api/runs/{run.id}").json()["params"]
    assert run.params["ae01"]["epochs"] == 1 and run.params["ae02"]["epochs"] == 2
    assert run.params["max_train_images"] == 1500


def test_a_refused_launch_raises_with_the_servers_own_field_messages(lab, client):
    body = {"kind": "finetune", "dataset": DATASET, "params": {"epochs": 0}}
    answer = client.post("/api/runs", json=body).json()
    with pytest.raises(errors.InvalidRequest) as caught:
        lab.launch("finetune", DATASET, {"epochs": 0})
    assert [f.message for f in caught.value.fields] == [e["msg"] for e in answer["errors"]]
    assert "params.epochs" in {f.field for f in caught.value.fields}


def test_an_unknown_run_is_not_found(lab):
    with pytest.raises(errors.NotFound):
        lab.run(987_654_321)


def test_cancel_requeue_and_clone_change_the_server_and_wait_names_the_cancel(lab, tag):
    run = lab.launch("pretrain", DATASET, preset="quick", tags=[tag])
    cancelled = lab.cancel(run)
    assert cancelled.status is RunStatus.CANCELLED
    with pytest.raises(errors.RunCancelled) as caught:
        cancelled.wait(progress=False)
    assert caught.value.run.id == run.id
    assert lab.requeue(run).status is RunStatus.QUEUED
    copy = run.clone(name=f"{tag}-copy")
    assert copy.id != run.id and copy.name == f"{tag}-copy" and copy.params == run.params
    for queued in (run, copy):
        queued.cancel()


def test_runs_is_the_csv_export_as_a_frame(lab, client, tag):
    first = lab.launch("pretrain", DATASET, {"seed": 1}, tags=[tag], name="=SUM(A1)")
    second = lab.launch("pretrain", DATASET, preset="quick", tags=[tag, "other"])
    frame = lab.runs(tag=tag)
    export = client.get("/api/runs/table.csv", params={"tag": tag}).text
    header = next(csv.reader(io.StringIO(export)))
    assert list(frame.columns) == header  # one shape: the server's
    assert frame["id"].tolist() == [second.id, first.id]  # newest first, as the table
    by_id = frame.set_index("id")
    assert by_id.loc[first.id, "name"] == "=SUM(A1)"  # the export's guard undone
    assert by_id.loc[second.id, "tags"] == second.refresh().data["tags"]  # "quick" added
    assert {tag, "other"} <= set(by_id.loc[second.id, "tags"])
    assert by_id.loc[first.id, "param.seed"] == 1
    assert by_id.loc[second.id, "param.ae02.epochs"] == second.params["ae02"]["epochs"]
    assert not by_id["archived"].any()
    assert str(by_id["created_at"].dtype).startswith("datetime64")


def test_table_pages_through_next_cursor(lab, client, tag):
    ids = [lab.launch("pretrain", DATASET, tags=[tag]).id for _ in range(3)]
    rows = list(lab.table(tag=tag, page_size=1))
    assert [row["id"] for row in rows] == sorted(ids, reverse=True)
    assert rows == client.get("/api/runs/table", params={"tag": tag}).json()["items"]
    assert len(list(lab.table(tag=tag, page_size=1, limit=2))) == 2


def test_an_unknown_filter_is_refused_by_name(lab):
    with pytest.raises(TypeError, match="colour"):
        lab.runs(colour="red")
