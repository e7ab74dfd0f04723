"""A data set import's row: claimed once, beaten, finished, reaped, re-sent and purged."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from backend.datasets import imports
from jobspec.scheduling import Lane
from store.artifacts import service as artifacts_service
from store.artifacts.models import Artifact
from store.datasets import lifecycle
from store.datasets.models import DatasetImport
from store.db import session_scope
from store.errors import InvalidRequest
from store.runs import upkeep
from store.timeutil import utcnow
from store.workers import service as workers_service
from store.workers.models import WorkerRecord


def new_import(tmp_path, name: str | None = None) -> tuple[int, int]:
    """A queued import with a small upload; returns (import id, upload artifact id)."""
    name = name or f"imp-{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.npz"
    path.write_bytes(b"not parsed here")
    with session_scope() as session:
        imports.check_name(session, name)
        artifact = artifacts_service.store_file(
            session=session, path=path, name=f"{name}/x.npz", kind="upload"
        )
        row = lifecycle.create(
            session=session, name=name, file_name="x.npz", upload_artifact_id=artifact.id
        )
        return row.id, artifact.id


def read(import_id: int) -> DatasetImport:
    with session_scope() as session:
        return session.get(DatasetImport, import_id)


def claim(import_id: int, worker: str = "h:1") -> bool:
    with session_scope() as session:
        return lifecycle.claim(session=session, import_id=import_id, worker=worker) is not None


def set_times(import_id: int, **ago: float) -> None:
    with session_scope() as session:
        session.execute(
            update(DatasetImport)
            .where(DatasetImport.id == import_id)
            .values(**{key: utcnow() - timedelta(seconds=s) for key, s in ago.items()})
        )


def upload_exists(artifact_id: int) -> bool:
    with session_scope() as session:
        return session.get(Artifact, artifact_id) is not None


def test_an_import_is_claimed_once_and_its_name_is_taken_until_it_ends(store, tmp_path):
    import_id, upload = new_import(tmp_path)
    name = read(import_id).name
    with session_scope() as session, pytest.raises(InvalidRequest, match="in progress"):
        imports.check_name(session, name)
    assert claim(import_id, "h:1")
    assert not claim(import_id, "h:2")  # a redelivered message finds it taken
    with session_scope() as session:
        lifecycle.beat(session=session, import_id=import_id, worker="h:1")
        with pytest.raises(lifecycle.ImportSuperseded):
            lifecycle.beat(session=session, import_id=import_id, worker="h:2")
        assert lifecycle.fail(session=session, import_id=import_id, message="bad", worker="h:1")
    row = read(import_id)
    assert (row.state, row.message, row.upload_artifact_id) == ("failed", "bad", None)
    assert not upload_exists(upload)
    with session_scope() as session:
        assert imports.check_name(session, name) == name  # free again


def test_two_active_imports_cannot_share_a_name(store, tmp_path):
    import_id, _ = new_import(tmp_path)
    name = read(import_id).name
    with pytest.raises(IntegrityError), session_scope() as session:
        lifecycle.create(session=session, name=name, file_name="y.npz", upload_artifact_id=None)


def test_a_silent_running_import_is_failed_and_frees_its_name(store, tmp_path):
    import_id, upload = new_import(tmp_path)
    fresh_id, _ = new_import(tmp_path)
    assert claim(import_id) and claim(fresh_id)
    set_times(import_id, heartbeat_at=30)
    with session_scope() as session:
        reaped = lifecycle.reap(session=session, stale_after=10, timeout=900)
    # Only this test's imports: the module's other tests share the database.
    assert [i for i, _ in reaped if i in (import_id, fresh_id)] == [import_id]
    row = read(import_id)
    assert row.state == "failed" and "the worker stopped while importing" in row.message
    assert not upload_exists(upload) and read(fresh_id).state == "running"
    # the worker, should it wake up, cannot finish it
    with session_scope() as session, pytest.raises(lifecycle.ImportSuperseded):
        lifecycle.finish(session=session, import_id=import_id, worker="h:1", dataset_id=1)


def test_an_import_past_its_time_budget_is_failed_even_while_beating(store, tmp_path):
    import_id, _ = new_import(tmp_path)
    assert claim(import_id)
    set_times(import_id, started_at=100 + lifecycle.STORE_SLACK_SECONDS)
    with session_scope() as session:
        reaped = lifecycle.reap(session=session, stale_after=10, timeout=60)
    assert [i for i, _ in reaped if i == import_id] == [import_id]  # others' are theirs
    assert "STACKLAB_IMPORT_TIMEOUT_SECONDS" in read(import_id).message


def test_a_queued_import_whose_message_was_lost_is_sent_again_once(store, tmp_path):
    import_id, _ = new_import(tmp_path)
    set_times(import_id, sent_at=300)
    sent: list[tuple[str, int]] = []
    keeper = upkeep.Upkeep(
        session_scope=session_scope,
        send=lambda kind, i: sent.append((kind, i)) or "task",
        settings=SimpleNamespace(
            preemption=False,  # these tests are not about setting runs aside
            stale_after_seconds=2,
            heartbeat_seconds=0.1,
            resend_after_seconds=60,
            import_timeout_seconds=900,
        ),
    )
    with session_scope() as session:  # no idle worker: a busy queue, not a lost message
        workers_service.report(
            session=session, name="busy", host="h", device="CPU", current_run_id=None
        )
        session.execute(update(WorkerRecord).values(last_seen=utcnow() - timedelta(hours=1)))
    assert import_id not in keeper.round()["imports_sent"]
    with session_scope() as session:  # an idle training worker never takes an import
        workers_service.report(
            session=session, name="trainer", host="h", device="CPU", current_run_id=None
        )
    assert import_id not in keeper.round()["imports_sent"]
    with session_scope() as session:
        workers_service.report(
            session=session,
            name="idle",
            host="h",
            device="CPU",
            current_run_id=None,
            lane=Lane.CPU,
        )
    assert import_id in keeper.round()["imports_sent"]
    assert ("import", import_id) in sent
    assert import_id not in keeper.round()["imports_sent"]  # sent a moment ago


def test_finished_imports_are_purged_after_a_week(store, tmp_path):
    old_id, _ = new_import(tmp_path)
    new_id, _ = new_import(tmp_path)
    for import_id in (old_id, new_id):
        claim(import_id)
        with session_scope() as session:
            lifecycle.fail(session=session, import_id=import_id, message="x")
    set_times(old_id, finished_at=8 * 24 * 3600)
    with session_scope() as session:
        assert lifecycle.purge_finished(session) >= 1
    assert read(old_id) is None and read(new_id).state == "failed"
