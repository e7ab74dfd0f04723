"""A store that cannot write (SQLite's query_only, PostgreSQL's default_transaction_read_only:
the store's own refusal, no raised fake): the worker keeps retrying the small failure record,
nobody gives the run up for dead meanwhile (every upkeep probes with a write first), and
once writes come back the run fails with the real reason and where a re-queue resumes."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine

from jobspec.status import RunStatus
from store import clock
from store.db import get_engine, reset_caches, session_scope
from store.faults import StoreFault
from store.health import HEALTH
from store.runs import service as runs_service
from store.runs import upkeep
from store.runs.models import Run
from store.settings import get_settings
from tests.fault_switch import sitecustomize as fault_switch
from tests.stack import PG_ADMIN_URL
from tests.store.test_lifecycle import claim, new_run


class ReadOnly:
    """Switch the test's store read-only and back, the way each database does it."""

    def __init__(self, tmp_path, monkeypatch):
        self.url = get_settings().sqlalchemy_url
        self.flag = tmp_path / "read-only"
        if self.url.startswith("sqlite"):
            fault_switch.install()
            monkeypatch.setenv("STACKLAB_TEST_READ_ONLY_FILE", str(self.flag))
            reset_caches()  # the engine is made again, with the switch

    def _pg(self, sql: str) -> None:
        name = self.url.rsplit("/", 1)[1].split("?")[0]
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(sql.format(f'"{name}"'))
        admin.dispose()
        get_engine().dispose()  # a session's default applies to new connections

    def on(self) -> None:
        if self.url.startswith("sqlite"):
            self.flag.touch()
        else:
            self._pg("ALTER DATABASE {} SET default_transaction_read_only = on")

    def off(self) -> None:
        if self.url.startswith("sqlite"):
            self.flag.unlink(missing_ok=True)
        else:
            self._pg("ALTER DATABASE {} RESET default_transaction_read_only")


@pytest.fixture
def read_only(store, tmp_path, monkeypatch):
    switch = ReadOnly(tmp_path, monkeypatch)
    yield switch
    switch.off()
    monkeypatch.undo()
    reset_caches()


def spec_of(run_id: int, attempt: int):
    from worker.runner import RunSpec

    return RunSpec(run_id, "finetune", {}, 0, None, None, attempt, None)


def test_the_failure_record_waits_out_a_read_only_store_and_no_one_reaps_the_run(store, read_only):
    from worker.recorder import StoreRecorder
    from worker.runner import _record_failure

    run_id = new_run(store)
    attempt = claim(run_id).attempt
    with session_scope() as session:
        run = session.get(Run, run_id)
        run.checkpoint = {"stage": "finetune", "epoch": 2, "attempt": attempt, "bytes": 1}
        run.heartbeat_at = clock.now(session) - timedelta(seconds=600)  # silent for long
    keeper = upkeep.Upkeep(
        session_scope=session_scope,
        send=lambda kind, rid: f"task-{rid}",
        settings=SimpleNamespace(
            preemption=False,  # these tests are not about setting runs aside
            stale_after_seconds=2,
            heartbeat_seconds=0.1,
            resend_after_seconds=60,
            import_timeout_seconds=900,
        ),
    )
    keeper.store_up_since = -1e9  # it has reached the store for ages: it would reap now
    read_only.on()
    recorder = StoreRecorder(run_id, attempt, settings=get_settings())
    outcome: list[str] = []
    writer = threading.Thread(
        target=lambda: outcome.append(
            _record_failure(
                spec_of(run_id, attempt),
                recorder,
                "The store refused a write: the store's disk is full (database or disk is full)",
                store_fault=True,
            )
        )
    )
    writer.start()
    try:
        for _ in range(3):  # every round probes with a write first, and reaps nobody
            with pytest.raises(Exception) as refused:
                keeper.round()
            assert "read" in str(refused.value).lower()
        finding = HEALTH.last(max_age=60)
        assert finding is not None and finding.fault is StoreFault.READ_ONLY
        with session_scope() as session:
            assert session.get(Run, run_id).status == RunStatus.RUNNING
        assert writer.is_alive()  # still retrying the failure record
    finally:
        read_only.off()
    writer.join(timeout=60)
    assert outcome == [RunStatus.FAILED]
    with session_scope() as session:
        run = session.get(Run, run_id)
        assert run.status == RunStatus.FAILED
        assert run.error.startswith("The store refused a write: the store's disk is full")
        assert run.error.endswith("re-queue to resume from epoch 2.")
        ends = [(a.number, a.outcome) for a in runs_service.list_attempts(session, run_id)]
    assert ends == [(attempt, "failed")]  # never "lost": no one gave it up for dead
    assert run_id not in dict(keeper.round()["reaped"])


def test_an_imports_failure_record_waits_out_a_read_only_store_too(store, read_only):
    """An import whose write is refused fails with that reason once writes come back, not
    as "the worker stopped while importing" (its heartbeat ends with the attempt)."""
    from store.datasets import lifecycle
    from store.datasets.models import DatasetImport, ImportState
    from worker import import_task

    with session_scope() as session:
        import_id = lifecycle.create(
            session=session, name="refused-import", file_name="x.npz", upload_artifact_id=None
        ).id
        assert lifecycle.claim(session=session, import_id=import_id, worker="h:1") is not None
    read_only.on()
    said = import_task._message(_refusal(OSError(28, "No space left on device")), "")
    assert said.startswith("the store refused a write: the store's disk is full")
    settings = get_settings().model_copy(update={"stale_after_seconds": 2.0})
    writer = threading.Thread(
        target=import_task._record_failure, args=(import_id, "h:1", said, settings)
    )
    writer.start()
    try:
        HEALTH.forget()
        with pytest.raises(Exception, match="(?i)read"), session_scope() as session:
            lifecycle.beat(session=session, import_id=import_id, worker="h:1")
        assert writer.is_alive()  # still retrying the failure record
    finally:
        read_only.off()
    writer.join(timeout=60)
    assert not writer.is_alive()
    with session_scope() as session:
        row = session.get(DatasetImport, import_id)
        assert row.state == ImportState.FAILED
        assert row.message == said


def _refusal(orig: BaseException) -> Exception:
    from sqlalchemy import exc

    return exc.DBAPIError.instance("UPDATE runs ...", {}, orig, Exception)


def test_a_full_disk_is_raised_at_once_where_an_outage_is_waited_out():
    import sqlite3

    import psycopg

    from worker.runner import _retrying

    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise _refusal(full)

    with pytest.raises(Exception, match="database or disk is full"):
        _retrying(refused, what="a write", timeout=60, max_delay=0.01)
    assert len(calls) == 1  # not ten minutes of retries

    def blinks() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise _refusal(psycopg.OperationalError("connection refused"))
        return "landed"

    assert _retrying(blinks, what="a write", timeout=60, max_delay=0.01) == "landed"
    assert len(calls) == 4
