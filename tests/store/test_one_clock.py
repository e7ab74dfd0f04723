"""One clock decides: every "how long ago" that gives a run up, re-sends a message, finds an
idle worker, fails an import or frees "evaluate now" is measured on the database's clock.

Two machines whose clocks disagree are two processes here: the test writes as one (its
clock shifted by STACKLAB_TEST_CLOCK_OFFSET_SECONDS) and decides as the other. Whatever
the shifts, a decision comes out as it would with no shift at all.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from jobspec.scheduling import Lane
from jobspec.status import RunStatus
from store import clock, resend
from store.datasets import lifecycle
from store.datasets.models import DatasetImport
from store.db import session_scope
from store.runs import attempts, evaluations, upkeep
from store.runs import service as runs_service
from store.runs.models import Run
from store.settings import get_settings
from store.timeutil import OFFSET_VARIABLE, utcnow
from store.workers import service as workers_service
from store.workers.models import WorkerRecord

SKEW = 300.0  # five minutes: far over every window below
# (the writer's clock, the clock of whoever decides), in seconds off the true time.
SKEWS = [(0.0, SKEW), (0.0, -SKEW), (SKEW, 0.0), (-SKEW, 0.0)]
SKEW_IDS = ["decider-ahead", "decider-behind", "writer-ahead", "writer-behind"]
# Clocks read a moment apart on one machine: far under SKEW, far over a busy machine's lag.
CLOSE = timedelta(seconds=60)


@pytest.fixture
def as_machine(monkeypatch):
    """as_machine(offset): this process's clock is `offset` seconds off from here on."""

    def shift(offset: float) -> None:
        monkeypatch.setenv(OFFSET_VARIABLE, f"{offset:g}")

    return shift


def db_now() -> datetime:
    with session_scope() as session:
        return clock.now(session)


def new_run(dataset_id: int, **fields) -> int:
    with session_scope() as session:
        return runs_service.create_run(
            session=session,
            kind="finetune",
            name="clock",
            params={},
            dataset_id=dataset_id,
            **fields,
        ).id


def claim(run_id: int) -> int:
    with session_scope() as session:
        got = attempts.claim(
            session=session, run_id=run_id, worker_host="w:1", device="CPU", versions={}
        )
        assert got is not None
        return got.attempt


def sent(run_id: int) -> None:
    with session_scope() as session:
        runs_service.mark_sent(session=session, run_id=run_id, task_id=f"task-{run_id}")


def backdate(model: type[Run] | type[DatasetImport], row_id: int, **ago: float) -> None:
    """Set times `ago` seconds before the database's now (what a stamp that old reads)."""
    with session_scope() as session:
        now = clock.now(session)
        values = {key: now - timedelta(seconds=s) for key, s in ago.items()}
        session.execute(update(model).where(model.id == row_id).values(**values))


def only_idle_worker(name: str, lane: Lane = Lane.TRAINING) -> None:
    """`name` reports idle now (on `lane`); every other worker row of the module was last
    seen long ago."""
    with session_scope() as session:
        session.execute(
            update(WorkerRecord).values(last_seen=clock.now(session) - timedelta(hours=1))
        )
    with session_scope() as session:
        workers_service.report(
            session=session, name=name, host="h", device="CPU", current_run_id=None, lane=lane
        )


def due(*own: int) -> set[int]:
    with session_scope() as session:
        found = upkeep.due_for_send(session, never_sent_grace=10, resend_after=60, idle_within=60)
    return {run_id for run_id, _ in found if run_id in own}


def status(run_id: int) -> RunStatus:
    with session_scope() as session:
        return session.scalar(select(Run.status).where(Run.id == run_id))


def test_the_database_clock_is_aware_utc_and_no_process_offset_moves_it(store, as_machine):
    for offset in (SKEW, -SKEW):
        as_machine(offset)
        real = datetime.now(UTC)
        with session_scope() as session:
            told = clock.now(session)
            also = clock.at(session.scalar(select(clock.column(session))))
        assert told.utcoffset() == timedelta(0) and also.utcoffset() == timedelta(0)
        assert abs(told - real) < CLOSE and abs(also - real) < CLOSE
        assert abs(utcnow() - real - timedelta(seconds=offset)) < CLOSE  # the process's own


@pytest.mark.parametrize(("writer", "decider"), SKEWS, ids=SKEW_IDS)
def test_a_run_that_beat_just_now_is_not_given_up_whatever_the_clocks(
    store, as_machine, writer, decider
):
    as_machine(writer)
    run_id = new_run(store)
    attempt = claim(run_id)
    with session_scope() as session:
        attempts.beat(session=session, run_id=run_id, attempt=attempt)
    as_machine(decider)
    with session_scope() as session:
        reaped = upkeep.reap_stale(session=session, stale_after=60)
    assert run_id not in {rid for rid, _ in reaped}
    assert status(run_id) == RunStatus.RUNNING
    backdate(Run, run_id, heartbeat_at=120)  # silent for two windows: given up all the same
    with session_scope() as session:
        reaped = upkeep.reap_stale(session=session, stale_after=60)
    assert (run_id, RunStatus.QUEUED) in reaped


@pytest.mark.parametrize(("writer", "decider"), SKEWS, ids=SKEW_IDS)
def test_a_message_sent_just_now_is_not_sent_again_whatever_the_clocks(
    store, as_machine, writer, decider
):
    as_machine(writer)
    just_sent, never_sent = new_run(store), new_run(store)
    sent(just_sent)
    only_idle_worker(f"idle-{uuid.uuid4().hex[:6]}")
    as_machine(decider)
    assert due(just_sent, never_sent) == set()  # within its grace, and sent just now
    with session_scope() as session:
        assert not upkeep.take_for_send(session, just_sent, resend_after=60)
    backdate(Run, just_sent, sent_at=120)
    backdate(Run, never_sent, queued_at=30)
    assert due(just_sent, never_sent) == {just_sent, never_sent}  # the idle worker counts
    with session_scope() as session:
        assert upkeep.take_for_send(session, just_sent, resend_after=60)
        assert not upkeep.take_for_send(session, just_sent, resend_after=60)  # one sender


@pytest.mark.parametrize(("writer", "decider"), SKEWS, ids=SKEW_IDS)
def test_a_worker_seen_just_now_is_online_and_idle_whatever_the_clocks(
    store, as_machine, writer, decider
):
    as_machine(writer)
    name = f"idle-{uuid.uuid4().hex[:6]}"
    only_idle_worker(name)
    as_machine(decider)
    with session_scope() as session:
        assert resend.a_worker_is_idle(session, within=10)
        assert name in [w.name for w in workers_service.online(session, 10)]
    with session_scope() as session:
        session.execute(
            update(WorkerRecord).values(last_seen=clock.now(session) - timedelta(seconds=30))
        )
    with session_scope() as session:
        assert not resend.a_worker_is_idle(session, within=10)
        assert name not in [w.name for w in workers_service.online(session, 10)]


def new_import(name: str) -> int:
    with session_scope() as session:
        return lifecycle.create(
            session=session, name=name, file_name="x.npz", upload_artifact_id=None
        ).id


@pytest.mark.parametrize(("writer", "decider"), SKEWS, ids=SKEW_IDS)
def test_an_import_that_beat_just_now_is_neither_failed_nor_sent_again_whatever_the_clocks(
    store, as_machine, writer, decider
):
    as_machine(writer)
    tag = uuid.uuid4().hex[:6]
    running, queued = new_import(f"run-{tag}"), new_import(f"queue-{tag}")
    with session_scope() as session:
        assert lifecycle.claim(session=session, import_id=running, worker="w:1") is not None
        lifecycle.beat(session=session, import_id=running, worker="w:1")
    only_idle_worker(f"idle-{tag}", Lane.CPU)  # imports run on the CPU lane
    as_machine(decider)
    with session_scope() as session:
        failed = lifecycle.reap(session=session, stale_after=10, timeout=60)
        assert running not in {import_id for import_id, _ in failed}
        assert queued not in lifecycle.due_for_send(session, resend_after=10, idle_within=60)
        assert not lifecycle.take_for_send(session, queued, resend_after=10)
    backdate(DatasetImport, running, heartbeat_at=30)
    backdate(DatasetImport, queued, sent_at=30)
    with session_scope() as session:
        failed = lifecycle.reap(session=session, stale_after=10, timeout=60)
        assert running in {import_id for import_id, _ in failed}
        assert queued in lifecycle.due_for_send(session, resend_after=10, idle_within=60)


@pytest.mark.parametrize(("writer", "decider"), SKEWS, ids=SKEW_IDS)
def test_an_evaluate_now_mark_holds_until_lost_whatever_the_clocks(
    store, as_machine, writer, decider
):
    from backend.runs import partial

    run_id = new_run(store)
    as_machine(writer)
    with session_scope() as session:
        assert evaluations.claim(session=session, run_id=run_id, lost_after=60) is not None
    as_machine(decider)
    with session_scope() as session:
        assert evaluations.claim(session=session, run_id=run_id, lost_after=60) is None
        assert partial.pending_evaluation(session, session.get_one(Run, run_id)) is not None
    lost_after = get_settings().evaluation_lost_after_seconds  # what the page reads
    backdate(Run, run_id, evaluation_queued_at=lost_after + 60)
    with session_scope() as session:
        assert partial.pending_evaluation(session, session.get_one(Run, run_id)) is None
        assert evaluations.claim(session=session, run_id=run_id, lost_after=60) is not None


@pytest.mark.parametrize(("writer", "decider"), SKEWS, ids=SKEW_IDS)
def test_the_web_measures_durations_and_workers_on_the_database_clock(
    store, as_machine, writer, decider
):
    from backend.conditional import CLOCK_SLOT_SECONDS, runs_state
    from backend.runs import queries, views

    as_machine(writer)
    run_id = new_run(store)
    claim(run_id)
    name = f"seen-{uuid.uuid4().hex[:6]}"
    only_idle_worker(name)
    as_machine(decider)
    with session_scope() as session:
        run = session.get_one(Run, run_id)
        [row] = views.rows_of(session, [(run, "demo")])
        assert 0 <= row["duration_seconds"] < CLOSE.total_seconds()
        panel = queries.queue_panel(session, online_within=10)
        assert name in [w["name"] for w in panel["workers"]]
        assert run_id in [r["id"] for r in panel[RunStatus.RUNNING]]
        assert abs(datetime.fromisoformat(panel["now"]) - datetime.now(UTC)) < CLOSE
        slot = runs_state(session)[-1]
        assert abs(slot - clock.now(session).timestamp() // CLOCK_SLOT_SECONDS) <= 1


def test_the_resend_never_selects_a_run_no_worker_will_claim(store, as_machine):
    # (A queued run with a cancel pending, the other kind no worker claims, cannot be
    # stored at all since migration 0011; the query leaves it out all the same.)
    as_machine(SKEW)
    plain = new_run(store)
    training = new_run(store)
    claim(training)
    waits = new_run(store, parent_run_id=training)  # its parent still trains
    done = new_run(store)
    with session_scope() as session:
        session.get_one(Run, done).status = RunStatus.SUCCEEDED
    ready = new_run(store, parent_run_id=done)
    own = (plain, waits, ready)
    for run_id in own:
        backdate(Run, run_id, queued_at=30)
    only_idle_worker(f"idle-{uuid.uuid4().hex[:6]}")
    assert due(*own) == {plain, ready}
    with session_scope() as session:
        assert not upkeep.take_for_send(session, waits, resend_after=60)
        for run_id in (plain, ready):
            assert upkeep.take_for_send(session, run_id, resend_after=60)
