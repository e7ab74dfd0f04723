"""The final write never races the run's link: a file the link is still writing (a stage's
reconstructions, stored mid-run) is committed before the final write takes over, so the
final write replaces it instead of colliding with it. Seen under load: a pretrain cancelled
right after a stage ended failed with "duplicate key ... uq_artifacts_run_id_name".
On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from sqlalchemy import select, text

import worker.recorder as recorder_module
from store.artifacts.models import Artifact
from store.db import session_scope
from store.runs import attempts
from store.runs import service as runs_service
from store.settings import get_settings
from tests.stack import wait_for
from worker.recorder import StoreRecorder

NAME = "reconstructions.npz"


def running_run(dataset_id: int) -> int:
    with session_scope() as session:
        run_id = runs_service.create_run(
            session=session, kind="pretrain", name="racing", params={}, dataset_id=dataset_id
        ).id
        attempts.claim(session=session, run_id=run_id, worker_host="h", device="CPU", versions={})
    return run_id


def test_the_final_write_waits_for_the_links_write_in_flight(store, monkeypatch, tmp_path):
    run_id = running_run(store)
    real = recorder_module.session_scope
    in_flight, release = threading.Event(), threading.Event()

    @contextmanager
    def paused_before_commit():
        with real() as session:
            yield session
            if (
                session.new
                or session.dirty
                or any(a.name == NAME for a in session.scalars(select(Artifact)).all())
            ):
                in_flight.set()  # the link's file is written, not yet committed
                assert release.wait(120), "the test never released the link's write"

    monkeypatch.setattr(recorder_module, "session_scope", paused_before_commit)
    final_file = tmp_path / NAME
    final_file.write_bytes(b"the final reconstructions")
    errors: list[BaseException] = []
    taken = threading.Event()

    def final_write(recorder: StoreRecorder) -> None:
        try:  # what worker.runner's final write does with the files a job returns
            pending = recorder.take_pending()
            taken.set()
            with session_scope() as session:
                from store.artifacts import service as artifacts_service

                artifacts_service.store_file(session=session, path=final_file, run_id=run_id)
                attempts.guard(session)
                pending.write(session, run_id, recorder.attempt)
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    recorder = StoreRecorder(run_id, 1, settings=get_settings())
    with recorder:
        recorder.file_ready(NAME, b"a stage's reconstructions")
        wait_for(in_flight.is_set, timeout=60, what="the link writing the stage's file")
        waiting = _SpyLock(recorder)
        finisher = threading.Thread(target=final_write, args=(recorder,))
        finisher.start()
        # Let the link commit only once the final write is stuck behind it: waiting for the
        # link's lock (the fix), or with the file taken, its insert held by the link's
        # uncommitted row (PostgreSQL; SQLite serialises whole writes, so it cannot collide).
        wait_for(
            lambda: waiting.is_set() or (taken.is_set() and _insert_is_blocked()),
            timeout=60,
            what="the final write to wait for the link",
        )
        release.set()
        finisher.join(timeout=120)
    assert not finisher.is_alive()
    assert errors == []
    with session_scope() as session:
        names = session.scalars(select(Artifact.name).where(Artifact.run_id == run_id)).all()
        data = session.scalars(select(Artifact).where(Artifact.run_id == run_id)).one()
        assert names == [NAME] and data.size == len(b"the final reconstructions")


class _SpyLock:
    """Wraps the recorder's flush lock (when it has one): set once someone waits for it."""

    def __init__(self, recorder: StoreRecorder) -> None:
        self._event = threading.Event()
        lock = getattr(recorder, "_flush_lock", None)
        if lock is not None:
            spy = self

            class Waiting:
                def __enter__(self) -> None:
                    if not lock.acquire(blocking=False):
                        spy._event.set()
                        lock.acquire()

                def __exit__(self, *exc: object) -> None:
                    lock.release()

            recorder._flush_lock = Waiting()  # type: ignore[assignment]

    def is_set(self) -> bool:
        return self._event.is_set()


def _insert_is_blocked() -> bool:
    """Whether a statement of this database waits for a row lock (SQLite: always true)."""
    with session_scope() as session:
        if session.get_bind().dialect.name != "postgresql":
            return True
        waits = session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return waits > 0
