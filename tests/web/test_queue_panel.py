"""The queue panel shows the scheduler's order (store/scheduler.py `plan`, which `claim_next`
follows), a reason for every waiting run, imports on the CPU lane, silent workers within two
heartbeats, and one ETA per run: the same figure in the panel, the runs table and the run's
JSON. On SQLite and PostgreSQL (the `client` fixture)."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, update

from jobspec.scheduling import Lane
from jobspec.status import ImportState, RunStatus
from store import clock, scheduler
from store.artifacts.models import Artifact
from store.datasets.models import DatasetImport
from store.db import session_scope
from store.runs import attempts
from store.runs.models import Run
from store.settings import get_settings
from store.workers import service as workers_service
from store.workers.models import WorkerRecord
from tests.web.factories import make_run, settle_queue

TRAINING = scheduler.Capacity(Lane.TRAINING)


@pytest.fixture(autouse=True)
def own_queue(client):
    """Only this test's runs wait or run, and only its workers and imports are online."""
    settle_queue(imports=True)
    yield
    settle_queue(imports=True)


def worker(name: str, *, device: str = "GPU:0", lane: Lane = Lane.TRAINING, **extra) -> str:
    extra.setdefault("current_run_id", None)
    with session_scope() as session:
        workers_service.report(
            session=session, name=name, host="h", device=device, lane=lane, **extra
        )
    return name


def queued(priority: int = 0, owner: str | None = None, age: float = 0.0, **columns) -> int:
    """A queued finetune (default params: a known length), queued `age` seconds ago."""
    run_id = make_run("finetune", RunStatus.QUEUED)
    with session_scope() as session:
        when = clock.now(session) - timedelta(seconds=age)
        values = {"priority": priority, "launched_by": owner, "queued_at": when, **columns}
        session.execute(update(Run).where(Run.id == run_id).values(**values))
    return run_id


def panel(client) -> dict:
    response = client.get("/api/queue")
    assert response.status_code == 200, response.text
    return response.json()


def waiting(client) -> dict[int, dict]:
    return {row["id"]: row for row in panel(client)["queued"]}


@pytest.mark.parametrize("seed", [0, 1])
def test_the_panels_order_is_the_plan_and_the_order_workers_claim(client, seed):
    rng = random.Random(seed)
    worker("the-one")
    for index in range(30):
        queued(rng.choice([0, 0, 5, 10]), rng.choice(["ana", "ben", "cy", None]), 1000 - index)
    rows = panel(client)["queued"]
    shown = [row["id"] for row in rows]
    assert [row["place"] for row in rows] == list(range(1, 31))
    with session_scope() as session:  # the plan, straight from the store
        runs = list(session.query(Run).filter(Run.status == RunStatus.QUEUED))
        waits = [
            scheduler.Waiting(r.id, r.launched_by, r.priority, r.queued_at, r.kind, estimate=60.0)
            for r in runs
        ]
        plan = scheduler.plan(
            waiting=waits,
            busy=[],
            slots=[scheduler.Slot("the-one", TRAINING)],
            shares=scheduler.Shares.read(session, {r.launched_by for r in runs}),
            now=clock.now(session),
        )
    assert shown == [p.id for p in sorted(plan, key=lambda p: p.place or 10**9)]
    started = []
    while True:  # one worker: claim, train, finish, claim...
        with session_scope() as session:
            got = scheduler.claim_next(
                session, TRAINING, worker_host="w", device="GPU:0", versions={}
            )
            if got is None:
                break
            started.append(got.run_id)
            attempts.finish(
                session=session,
                run_id=got.run_id,
                attempt=got.claim.attempt,
                status=RunStatus.SUCCEEDED,
            )
    assert started == shown


def test_each_waiting_state_has_its_reason(client):
    worker("gpu-worker")
    ana, ben_ = f"ana-{uuid.uuid4().hex[:6]}", f"ben-{uuid.uuid4().hex[:6]}"  # never started
    first = queued(5, ana, age=50)
    lower = queued(0, ana, age=40)
    ana_later = queued(0, ana, age=30)
    ben = queued(0, ben_, age=20)
    parent = queued(0, None, age=10, name="a parent")
    child = queued(0, None, age=5, parent_run_id=parent)
    unsent = queued(0, None, age=1, sent_at=None)
    rows = waiting(client)
    assert rows[first]["waiting"] == "next to start" and rows[first]["place"] == 1
    assert rows[lower]["waiting"] == "behind higher-priority runs"
    assert rows[ben]["waiting"] == "behind higher-priority runs"
    # once the priority-5 run is gone, ana and ben take turns: ben jumps ana's later run
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == first).values(status=RunStatus.CANCELLED))
    rows = waiting(client)
    assert rows[lower]["waiting"] == "next to start"
    assert rows[ben]["place"] < rows[ana_later]["place"]
    assert rows[ana_later]["waiting"] == "fair share (another token's turn)"
    assert rows[child]["waiting"] == f"waits for finetune run #{parent}"
    assert rows[child]["blocked"] and rows[child]["starts_in_seconds"] is None
    assert rows[unsent]["waiting"] == "not sent yet: sending" and rows[unsent]["blocked"]
    for row in rows.values():
        assert row["place"] is not None and row["priority"] in (0, 5)


def test_a_run_no_online_worker_can_take_says_what_it_needs(client):
    gpu = queued(needs_gpu=True)
    big = queued(min_gpu_memory_mb=40000)
    plain = queued()
    assert waiting(client)[plain]["waiting"] == "no worker online"
    worker("cpu-lane", device="CPU", lane=Lane.CPU)
    rows = waiting(client)
    assert rows[plain]["waiting"].endswith("only CPU-lane workers online")
    worker("cpu-trainer", device="CPU")
    worker("small-gpu", device="GPU:0", gpu_memory_mb=16000)
    rows = waiting(client)
    assert rows[plain]["place"] is not None
    assert rows[gpu]["place"] is not None  # the small GPU takes it
    assert rows[big]["place"] is None and rows[big]["blocked"]
    assert rows[big]["waiting"] == "no online worker can take it: needs 40,000 MB GPU memory"
    ids = [row["id"] for row in panel(client)["queued"]]
    assert ids[-1] == big  # no place: listed last
    with session_scope() as session:
        session.execute(delete(WorkerRecord).where(WorkerRecord.name == "small-gpu"))
    assert waiting(client)[gpu]["waiting"] == "no online worker can take it: needs a GPU"


def test_imports_wait_on_the_cpu_lane_with_a_position_and_an_eta(client):
    with session_scope() as session:
        ids = []
        for index, size in enumerate((7_000_000, 3_500_000)):
            upload = Artifact(name=f"upload-{index}.zip", kind="upload", size=size)
            session.add(upload)
            session.flush()
            row = DatasetImport(
                name=f"panel-import-{index}-{upload.id}",
                file_name="x.zip",
                upload_artifact_id=upload.id,
                state=ImportState.QUEUED,
                created_at=clock.now(session) + timedelta(seconds=index),
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
    queued()  # a training run waits too: imports never wait behind it
    imports = {row["id"]: row for row in panel(client)["imports"]}
    assert imports[ids[0]]["waiting"] == "no CPU-lane worker online"
    worker("cpu-lane", device="CPU", lane=Lane.CPU)
    rows = panel(client)["imports"]
    found = {row["id"]: row for row in rows}
    assert [found[i]["place"] for i in ids] == [1, 2]
    assert found[ids[0]]["waiting"] == "next to start"
    assert found[ids[0]]["estimated_seconds"] == pytest.approx(3.5)  # 7 MB at 2 MB/s
    assert found[ids[0]]["estimate_source"] == "default"
    assert found[ids[1]]["starts_in_seconds"] == pytest.approx(3.5)
    assert found[ids[1]]["finishes_in_seconds"] == pytest.approx(5.25)


def _age(name: str, run_id: int, seconds: float) -> None:
    """The worker and its run last heard `seconds` ago, by the database's clock."""
    with session_scope() as session:
        then = clock.now(session) - timedelta(seconds=seconds)
        session.execute(
            update(WorkerRecord).where(WorkerRecord.name == name).values(last_seen=then)
        )
        session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=then))


def _everywhere(client, run_id: int) -> list[tuple]:
    """The run's ETA (seconds, note) as the panel, the table row and its own JSON show it."""
    running = next(r for r in panel(client)["running"] if r["id"] == run_id)
    table = client.get("/api/runs/table", params={"status": RunStatus.RUNNING}).json()
    row = next(r for r in table["items"] if r["id"] == run_id)["progress"]
    run = client.get(f"/api/runs/{run_id}").json()
    return [(found["eta_seconds"], found["eta_note"]) for found in (running, row, run)]


def test_a_silent_worker_is_shown_within_two_heartbeats_and_its_eta_is_unknown(client):
    beat = get_settings().heartbeat_seconds
    params = {"stage": "ae02", "n_trials": 2, "epochs": 3}
    progress = {"stage": "trial-1", "epoch": 2, "epochs": 3, "step": 0, "steps": 1}
    rates = {"trial-0/images_per_sec": [10.0, 40.0, 40.0], "trial-1/images_per_sec": [10.0]}
    run_id = make_run("tune", RunStatus.RUNNING, params=params, progress=progress, metrics=rates)
    worker("quiet", current_run_id=run_id)
    _age("quiet", run_id, beat * 1.5)  # one and a half heartbeats: still heard
    listed = {w["name"]: w for w in client.get("/api/workers").json()}
    assert listed["quiet"]["silent"] is False
    assert listed["quiet"]["heard_seconds_ago"] == pytest.approx(beat * 1.5, abs=1.5)
    etas = _everywhere(client, run_id)
    assert etas[0][0] is not None and len(set(etas)) == 1  # one ETA, shown the same
    _age("quiet", run_id, beat * 2 + 1)  # past two heartbeats: silent
    listed = {w["name"]: w for w in client.get("/api/workers").json()}
    assert listed["quiet"]["silent"] is True
    assert panel(client)["workers"][0]["silent"] is True
    assert _everywhere(client, run_id) == [(None, "unknown: worker silent")] * 3
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["worker_silent"] is True and run["heard_seconds_ago"] >= beat * 2
    page = client.get(f"/runs/{run_id}").text
    assert "unknown: worker silent" in page and "silent · last heard" in page
    assert "silent · last heard" in client.get("/runs").text


def test_one_eta_per_run_the_same_in_the_panel_the_table_and_the_run(client):
    params = {"stage": "ae02", "n_trials": 2, "epochs": 3}
    progress = {"stage": "trial-1", "epoch": 2, "epochs": 3, "step": 0, "steps": 1}
    progress["eta_seconds"] = 9999.0  # the worker's own figure: not what the pages show
    rates = {"trial-0/images_per_sec": [10.0, 40.0, 40.0], "trial-1/images_per_sec": [10.0]}
    run_id = make_run("tune", RunStatus.RUNNING, params=params, progress=progress, metrics=rates)
    worker("busy", current_run_id=run_id)
    (seconds, note), *rest = _everywhere(client, run_id)
    assert seconds is not None and seconds != 9999.0 and note is None
    assert rest == [(seconds, note)] * 2


def test_a_priority_changed_elsewhere_is_a_new_answer_to_a_poll(client):
    worker("poll-worker")
    first, second = queued(age=20), queued(age=10)
    answer = client.get("/api/queue")
    assert [r["id"] for r in answer.json()["queued"]] == [first, second]
    with session_scope() as session:  # as another web process would
        session.execute(update(Run).where(Run.id == second).values(priority=3))
    again = client.get("/api/queue", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 200
    assert [r["id"] for r in again.json()["queued"]] == [second, first]


def test_a_run_claimed_while_its_page_renders_is_in_one_list_and_says_so(client):
    """A run page reads its run while it waits, a worker claims it before the page reads the
    panel (the two reads of one request): the panel lists the run as running with its ETA
    (never a KeyError, a 500 of the page), and the page's run object says running too."""
    from backend.runs import panel as queue_panel

    run_id = queued()
    worker("w-claims", current_run_id=run_id)
    with session_scope() as session:
        seen = session.get(Run, run_id)
        assert seen is not None and seen.status == RunStatus.QUEUED
        with session_scope() as other:
            attempts.claim(
                session=other, run_id=run_id, worker_host="h", device="GPU:0", versions={}
            )
        found = queue_panel.queue_panel(session, online_within=60)
        if seen.status == RunStatus.RUNNING:  # a database whose reads see the claim
            assert [row["id"] for row in found[RunStatus.RUNNING]] == [run_id]
            assert found[RunStatus.QUEUED] == []
            assert queue_panel.waiting_row(session, run_id) is None
        else:  # one snapshot for the request (SQLite): still waiting, in that list alone
            assert [row["id"] for row in found[RunStatus.QUEUED]] == [run_id]
            assert found[RunStatus.RUNNING] == []
