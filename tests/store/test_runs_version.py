"""The runs table's change counter (store/runs/changes.py, migration 0014) moves on every
change to a run, whoever makes it (a create, a send, a claim, a beat, a finish, a
hand-back, the upkeep's give-up, a cancel, a re-queue, a priority change, a set-aside, a
rename, an archive, a delete), only when the change commits, and so does the poll
validator of the pages that list runs (backend/conditional.py `runs_state`). On PostgreSQL
it is bumped once per transaction, at its commit: two writers of different runs never wait
for each other on it. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from jobspec.status import RunStatus
from store import clock
from store.db import get_engine, session_scope
from store.runs import attempts, changes, upkeep
from store.runs import service as runs_service
from store.runs.models import Run

Change = Callable[[Session, int], object]


def _queued(dataset_id: int, name: str = "counted") -> int:
    with session_scope() as session:
        run = runs_service.create_run(
            session=session,
            kind="finetune",
            name=name,
            params={"runtime": {"max_attempts": 2}},
            dataset_id=dataset_id,
        )
        return run.id


def _claim(session: Session, run_id: int) -> object:
    return attempts.claim(
        session=session, run_id=run_id, worker_host="h", device="CPU", versions={}
    )


def _running(dataset_id: int) -> int:
    run_id = _queued(dataset_id)
    with session_scope() as session:
        assert _claim(session, run_id)
    return run_id


def _silent(session: Session, run_id: int) -> None:
    beat = clock.now(session) - timedelta(seconds=600)
    session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=beat))


def _give_up(session: Session, run_id: int) -> object:
    others = session.scalars(
        select(Run.id).where(Run.status == RunStatus.RUNNING, Run.id != run_id)
    ).all()
    reaped = upkeep.reap_stale(session=session, stale_after=60, exclude=frozenset(others))
    assert [found for found, _ in reaped] == [run_id]
    return reaped


def _silent_running(dataset_id: int) -> int:
    run_id = _running(dataset_id)
    with session_scope() as session:
        _silent(session, run_id)
    return run_id


def _failed(dataset_id: int) -> int:
    run_id = _running(dataset_id)
    with session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status="failed", error="x")
    return run_id


def _version() -> int:
    with session_scope() as session:
        found = changes.version(session)
    assert found is not None
    return found


def _changed(change: Change, run_id: int) -> bool:
    before = _version()
    with session_scope() as session:
        change(session, run_id)
    return _version() > before


# (what changes the run, how the run is made first)
CHANGES: dict[str, tuple[Change, Callable[[int], int]]] = {
    "send": (lambda s, i: runs_service.mark_sent(session=s, run_id=i, task_id="t"), _queued),
    "claim": (_claim, _queued),
    "beat": (
        lambda s, i: attempts.beat(session=s, run_id=i, attempt=1, progress={"epoch": 2}),
        _running,
    ),
    "finish": (
        lambda s, i: attempts.finish(session=s, run_id=i, attempt=1, status="succeeded"),
        _running,
    ),
    "hand back": (
        lambda s, i: attempts.hand_back(session=s, run_id=i, attempt=1, reason="SIGTERM"),
        _running,
    ),
    "give up": (_give_up, _silent_running),
    "cancel queued": (lambda s, i: runs_service.request_cancel(session=s, run_id=i), _queued),
    "cancel running": (lambda s, i: runs_service.request_cancel(session=s, run_id=i), _running),
    "re-queue": (lambda s, i: runs_service.requeue(session=s, run_id=i), _failed),
    "priority": (
        lambda s, i: runs_service.set_priority(session=s, run_id=i, priority=5),
        _queued,
    ),
    "set aside": (
        lambda s, i: s.execute(update(Run).where(Run.id == i).values(set_aside_for=i)),
        _running,
    ),
    "rename": (lambda s, i: s.execute(update(Run).where(Run.id == i).values(name="n")), _queued),
    "archive": (
        lambda s, i: runs_service.set_archived(session=s, run_id=i, archived=True),
        _failed,
    ),
    "delete": (lambda s, i: runs_service.delete_runs(session=s, run_ids=[i]), _failed),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_every_change_to_a_run_moves_the_counter(store, name):
    change, made = CHANGES[name]
    run_id = made(store)
    assert _changed(change, run_id), name


def test_a_new_run_moves_the_counter(store):
    before = _version()
    _queued(store)
    assert _version() > before


def test_a_change_rolled_back_leaves_the_counter(store):
    run_id = _queued(store)
    before = _version()
    with pytest.raises(RuntimeError), session_scope() as session:
        runs_service.set_priority(session=session, run_id=run_id, priority=7)
        raise RuntimeError("rolled back")
    assert _version() == before


def test_the_counter_moves_when_the_change_commits_not_before(store):
    run_id = _queued(store)
    before = _version()
    with session_scope() as session:
        runs_service.set_priority(session=session, run_id=run_id, priority=3)
        session.flush()
        assert _version() == before  # another session: nothing committed yet
    assert _version() > before


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_many_changes_in_one_transaction_move_it_once(store):
    ids = [_queued(store) for _ in range(3)]
    before = _version()
    with session_scope() as session:
        for run_id in ids:
            runs_service.set_priority(session=session, run_id=run_id, priority=2)
        session.execute(update(Run).where(Run.id.in_(ids)).values(name="again"))
    assert _version() == before + 1


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_two_writers_of_different_runs_do_not_wait_on_the_counter(store):
    """The first holds its transaction open after its write; the second (another run)
    writes and commits without waiting (a lock wait would hit the lock timeout)."""
    first, second = _queued(store), _queued(store)
    before = _version()
    engine = get_engine()
    with engine.connect() as holder:
        holder.execute(update(Run).where(Run.id == first).values(priority=4))
        with Session(engine) as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            session.execute(update(Run).where(Run.id == second).values(priority=4))
            session.commit()
        assert _version() == before + 1
        holder.commit()
    assert _version() == before + 2


def test_the_poll_validator_of_run_lists_follows_the_counter(store):
    from backend.conditional import runs_state

    run_id = _queued(store)
    with session_scope() as session:
        first = runs_state(session)
        assert runs_state(session)[:-1] == first[:-1]  # unchanged (the clock slot aside)
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(notes="a note"))
    with session_scope() as session:
        assert runs_state(session)[0] > first[0]
