"""Two places on a screen never disagree about a run: every page and JSON answer that shows a
run's state, ETA, "last heard", duration or queue place (the run page and its poll, the runs
table and its rows, the queue panel, compare, a study's arms, the data sets page and its
import status) derives it from one source (backend/runs/liveness.py, panel.py,
panel_imports.py). This renders them all for runs in every status, a running run whose
worker went silent past two heartbeats, queued runs with and without a place and imports,
on a frozen database clock (every page reads the same "now", so figures compare exactly),
and compares what each place says.
"""

from __future__ import annotations

import html
import json
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import update

from backend import conditional
from backend.formatting import fmt_duration
from jobspec.scheduling import Lane
from jobspec.status import ImportState, RunStatus
from store import clock
from store.artifacts.models import Artifact
from store.datasets.models import DatasetImport
from store.db import session_scope
from store.runs.models import Run
from store.settings import get_settings
from store.workers import service as workers_service
from store.workers.models import WorkerRecord
from tests.web.factories import make_ablation, make_run, settle_queue

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join("".join(parts).split())

    def walk(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find(self, **attrs: str) -> list[Node]:
        return [n for n in self.walk() if all(n.attrs.get(k) == v for k, v in attrs.items())]

    def by_id(self, node_id: str) -> Node:
        found = self.find(id=node_id)
        assert len(found) == 1, f"#{node_id}: {len(found)} elements"
        return found[0]

    def rows_linking(self, run_id: int) -> list[Node]:
        """The <tr>s that link to the run's page."""
        out = []
        for link in self.find(href=f"/runs/{run_id}"):
            node = link.parent
            while node is not None and node.tag != "tr":
                node = node.parent
            if node is not None and node not in out:
                out.append(node)
        return out


class Tree(HTMLParser):
    """A small DOM of a page (no third-party parser in the project)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = self.at = Node("#root", {}, None)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_endtag(self, tag):
        node: Node | None = self.at
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.at = node.parent

    def handle_data(self, data):
        self.at.children.append(data)


def page(client, path: str) -> Node:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return Tree(response.text).root


def get(client, path: str, **params) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def eta_text(fields: dict) -> str:
    """What every place writes for a running run's ETA."""
    if fields["eta_seconds"] is not None:
        return fmt_duration(fields["eta_seconds"])
    return fields["eta_note"]


def heard_text(fields: dict) -> str:
    silent = "silent · " if fields.get("worker_silent", fields.get("silent")) else ""
    return f"{silent}last heard {fmt_duration(fields['heard_seconds_ago'])} ago"


@pytest.fixture
def frozen(client, monkeypatch):
    """The database's clock stands still (every page reads the same now), only this
    module's runs wait or run and only its workers and imports are online."""
    settle_queue(imports=True)
    with session_scope() as session:
        moment = clock.now(session)
    monkeypatch.setattr(clock, "now", lambda session: moment)
    conditional.VALIDATORS.forget()
    conditional.ANSWERS.forget()
    yield moment
    settle_queue(imports=True)
    conditional.VALIDATORS.forget()
    conditional.ANSWERS.forget()


def worker(name: str, *, lane: Lane = Lane.TRAINING, run_id: int | None = None) -> str:
    with session_scope() as session:
        workers_service.report(
            session=session,
            name=name,
            host=name,
            device="CPU" if lane == Lane.CPU else "GPU:0",
            lane=lane,
            current_run_id=run_id,
        )
    return name


def silence(name: str, run_id: int, seconds: float) -> None:
    """The worker and its run last heard `seconds` before the frozen now."""
    with session_scope() as session:
        then = clock.now(session) - timedelta(seconds=seconds)
        session.execute(
            update(WorkerRecord).where(WorkerRecord.name == name).values(last_seen=then)
        )
        session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=then))


def an_import(name: str, size: int, after: float) -> int:
    with session_scope() as session:
        upload = Artifact(name=f"{name}.zip", kind="upload", size=size)
        session.add(upload)
        session.flush()
        row = DatasetImport(
            name=f"{name}-{upload.id}",
            file_name=f"{name}.zip",
            upload_artifact_id=upload.id,
            state=ImportState.QUEUED,
            created_at=clock.now(session) + timedelta(seconds=after),
        )
        session.add(row)
        session.flush()
        return row.id


PROGRESS = {"stage": "finetune", "epoch": 2, "epochs": 5, "step": 1, "steps": 4}


@pytest.fixture
def store(frozen):
    """Runs in every status, a silent worker's run, queued runs with and without a place."""
    beat = get_settings().heartbeat_seconds
    runs: dict[str, int] = {
        status: make_run("finetune", status, name=f"agree {status}")
        for status in RunStatus
        if status not in (RunStatus.QUEUED, RunStatus.RUNNING)
    }
    runs["live"] = make_run(
        "finetune",
        RunStatus.RUNNING,
        name="agree live",
        progress=PROGRESS,
        metrics={"finetune/images_per_sec": [100.0, 120.0]},
    )
    runs["silent"] = make_run("finetune", RunStatus.RUNNING, name="agree silent", progress=PROGRESS)
    runs["fresh"] = make_run("finetune", RunStatus.RUNNING, name="agree no batch yet")
    worker("agree-busy", run_id=runs["live"])
    worker("agree-quiet", run_id=runs["silent"])
    worker("agree-idle")
    silence("agree-quiet", runs["silent"], 2 * beat + 3)
    with session_scope() as session:  # it started 100 s ago and was last heard 2 beats + 3 s ago
        started = clock.now(session) - timedelta(seconds=100)
        session.execute(update(Run).where(Run.id == runs["silent"]).values(started_at=started))
    for index in range(3):
        runs[f"queued-{index}"] = make_run("finetune", RunStatus.QUEUED, name=f"agree q{index}")
        with session_scope() as session:
            then = clock.now(session) - timedelta(seconds=30 - index)
            session.execute(
                update(Run).where(Run.id == runs[f"queued-{index}"]).values(queued_at=then)
            )
    runs["held"] = make_run("finetune", RunStatus.QUEUED, name="agree held")
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == runs["held"]).values(min_gpu_memory_mb=10**6))
    return runs


RUNNING = ("live", "silent", "fresh")


def test_every_place_says_the_same_state_eta_last_heard_and_duration(client, store):
    runs = store
    ids = list(runs.values())
    api = {run_id: get(client, f"/api/runs/{run_id}") for run_id in ids}
    table = {r["id"]: r for r in get(client, "/api/runs/table", limit=50)["items"]}
    queue = get(client, "/api/queue")
    listing = page(client, "/runs")
    compare = page(client, f"/compare?ids={','.join(map(str, ids[:10]))}")

    # The state: the run's JSON, its page, the table (JSON and HTML), compare and the panel.
    for key, run_id in runs.items():
        status = api[run_id]["status"]
        assert table[run_id]["status"] == status, key
        assert page(client, f"/runs/{run_id}").by_id("run-status").text() == status, key
        assert listing.find(**{"data-id": str(run_id), "data-status": status}), key
        for badge in compare.find(**{"data-status-of": str(run_id)}):
            assert badge.text() == status, key
    assert {r["id"] for r in queue["running"]} == {runs[k] for k in RUNNING}
    assert {r["id"] for r in queue["queued"]} == {
        runs[k] for k in runs if k.startswith(("queued", "held"))
    }

    # A running run: one ETA, one "last heard", one duration, wherever it shows.
    panel_html = listing.by_id("queue-running")
    for key in RUNNING:
        run_id = runs[key]
        found = api[run_id]
        panel_row = next(r for r in queue["running"] if r["id"] == run_id)
        row = table[run_id]["progress"]
        fields = ("eta_seconds", "eta_note", "worker_silent", "heard_seconds_ago", "heard_at")
        assert {k: panel_row[k] for k in fields} == {k: row[k] for k in fields}, key
        assert {k: found[k] for k in fields[:-1]} == {k: row[k] for k in fields[:-1]}, key
        text = eta_text(found)
        run_page = page(client, f"/runs/{run_id}")
        assert run_page.by_id("p-eta").text() == text, key
        assert f"ETA {text}" in listing.find(**{"data-id": str(run_id)})[0].text(), key
        (shown,) = panel_html.rows_linking(run_id)
        assert f"ETA {text}" in shown.text(), key
        assert run_page.by_id("run-heard").text() == heard_text(found), key
        if found["worker_silent"]:  # the table's row says so too, with the same age
            assert heard_text(found) in listing.find(**{"data-id": str(run_id)})[0].text(), key
        duration = run_page.by_id("run-duration").text()
        assert duration == fmt_duration(table[run_id]["duration_seconds"]), key

    silent = api[runs["silent"]]
    assert silent["worker_silent"] and silent["eta_seconds"] is None
    assert silent["eta_note"] == "unknown: worker silent"
    assert not api[runs["live"]]["worker_silent"] and api[runs["live"]]["eta_seconds"] is not None
    # its duration stopped where it was last heard (it does not tick on for a dead worker)
    beat = get_settings().heartbeat_seconds
    assert table[runs["silent"]]["duration_seconds"] == pytest.approx(100 - (2 * beat + 3))
    assert silent["heard_seconds_ago"] == pytest.approx(2 * beat + 3)
    # the worker's own row in the panel (JSON and HTML) says it is silent, with the same age
    quiet = next(w for w in queue["workers"] if w["name"] == "agree-quiet")
    assert quiet["silent"] and quiet["heard_seconds_ago"] == silent["heard_seconds_ago"]
    workers_html = listing.by_id("queue-workers").text()
    assert heard_text(quiet) in workers_html


def test_a_queued_run_shows_the_panels_place_and_reason_on_its_page(client, store):
    runs = store
    queue = get(client, "/api/queue")
    listing = page(client, "/runs").by_id("queue-queued")
    placed = [r for r in queue["queued"] if r["place"] is not None]
    assert [r["id"] for r in placed] == [runs[f"queued-{i}"] for i in range(3)]
    assert [r["place"] for r in placed] == [1, 2, 3]
    for key in ("queued-0", "queued-1", "queued-2", "held"):
        run_id = runs[key]
        row = next(r for r in queue["queued"] if r["id"] == run_id)
        (shown,) = listing.rows_linking(run_id)
        assert row["waiting"] in shown.text(), key
        place = f"{row['place']}." if row["place"] is not None else "–"
        assert shown.text().startswith(place), key
        expected = f"{row['place']}. in line · " if row["place"] is not None else ""
        expected += row["waiting"] + (f" · {row['retry']}" if row["retry"] else "")
        if row["starts_in_seconds"] is not None:
            expected += f" · starts in {fmt_duration(row['starts_in_seconds'])}"
        assert page(client, f"/runs/{run_id}").by_id("run-waiting").text() == expected, key
    held = next(r for r in queue["queued"] if r["id"] == runs["held"])
    assert held["place"] is None and "needs 1,000,000 MB" in held["waiting"]
    # a run that does not wait shows no queue line
    done = page(client, f"/runs/{runs[RunStatus.SUCCEEDED]}").by_id("run-waiting")
    assert "hidden" in done.attrs and done.text() == ""


def test_a_studys_running_arm_shows_the_one_eta(client, frozen):
    group = make_ablation("augmentation", {0: (12, 16)}, running={0: "on"})
    data = get(client, f"/api/groups/{group}/ablation")
    (arm,) = [r for r in data["runs"] if r["status"] == RunStatus.RUNNING]
    found = get(client, f"/api/runs/{arm['id']}")
    for key in ("eta_seconds", "eta_note", "worker_silent", "heard_seconds_ago"):
        assert arm["progress"].get(key) == found[key], key


def test_an_import_says_the_same_place_and_words_on_the_data_sets_page_and_the_panel(
    client, frozen
):
    first = an_import("agree-a", 7_000_000, 0)
    second = an_import("agree-b", 3_500_000, 1)
    worker("agree-cpu", lane=Lane.CPU)
    worker("agree-trainer")
    make_run("finetune", RunStatus.QUEUED, name="agree waits for training")
    queue = {r["id"]: r for r in get(client, "/api/queue")["imports"]}
    pending = page(client, "/datasets").by_id("pending-imports").text()
    listed = {i["import_id"]: i for i in json.loads(html.unescape(pending))}
    for import_id, place in ((first, 1), (second, 2)):
        row = queue[import_id]
        status = get(client, f"/api/datasets/imports/{import_id}")
        assert row["place"] == place and row["lane"] == Lane.CPU
        assert status["words"] == listed[import_id]["words"] == row["words"]
        assert status["queue"]["place"] == place
        assert status["words"].startswith(f"queued: {place}. in line on the CPU lane")
        assert "importing" not in status["words"]  # it waits: nobody imports it yet
    # the first starts now on the idle CPU-lane worker (never behind the training run)
    assert queue[first]["waiting"] == "next to start"
    assert queue[second]["starts_in_seconds"] == pytest.approx(3.5)
    assert queue[second]["words"].endswith(f"starts in 4s · done in {fmt_duration(5.25)}")
    with session_scope() as session:
        session.execute(
            update(DatasetImport)
            .where(DatasetImport.id == first)
            .values(state=ImportState.RUNNING, started_at=clock.now(session))
        )
    conditional.VALIDATORS.forget()
    conditional.ANSWERS.forget()
    status = get(client, f"/api/datasets/imports/{first}")
    assert status["words"].startswith("importing on a CPU-lane worker")
    assert get(client, f"/api/datasets/imports/{second}")["words"].startswith(
        "queued: 1. in line on the CPU lane"
    )
