"""Liveness never waits on data: a run's link beats in transactions of its own while its
data streams in staged, a chunk per transaction, so a checkpoint write held for three
stale windows (a slow link, a busy disk) loses nothing, and what a superseded attempt was
streaming never becomes visible. The store is slowed at a seam between two chunks
(store.runs.staging.chunk_stored). On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from jobspec.status import RunStatus
from store import clock
from store.artifacts import service as artifacts_service
from store.artifacts.models import Artifact
from store.db import session_scope
from store.errors import AttemptSuperseded
from store.runs import attempts, checkpoints, staging, upkeep
from store.runs import service as runs_service
from store.runs.models import Run
from store.settings import get_settings
from tests.stack import TIMEOUT_SCALE, scaled, wait_for
from worker import runner
from worker.ml.reporting import Progress
from worker.recorder import StoreRecorder

STALE = 4.0 * TIMEOUT_SCALE  # the stale window: a beat every 0.2 s is far inside it
MIB = 1024 * 1024


@dataclass
class FakeCheckpoint:
    """What the link needs of a worker.ml Checkpoint: its place and its bytes."""

    stage: str
    epoch: int
    data: bytes

    def to_bytes(self) -> bytes:
        return self.data


class Hold:
    """Holds the stream of one run's file after its first chunk, until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, run_id: int, name: str) -> None:
        self.held, self.release = threading.Event(), threading.Event()

        def chunk_stored(stored_run: int, stored_name: str, seq: int) -> None:
            if (stored_run, stored_name, seq) == (run_id, name, 0):
                self.held.set()
                assert self.release.wait(scaled(300)), "the test never released the write"

        monkeypatch.setattr(staging, "chunk_stored", chunk_stored)

    def wait(self) -> None:
        wait_for(self.held.is_set, timeout=60, what="the write to reach its held chunk")


def running_run(dataset_id: int) -> int:
    with session_scope() as session:
        run_id = runs_service.create_run(
            session=session, kind="finetune", name="slow", params={}, dataset_id=dataset_id
        ).id
        attempts.claim(session=session, run_id=run_id, worker_host="h", device="CPU", versions={})
    return run_id


def link(run_id: int, attempt: int = 1) -> StoreRecorder:
    settings = get_settings().model_copy(
        update={
            "heartbeat_seconds": 0.2,
            "progress_interval_seconds": 0.2,
            "stale_after_seconds": STALE,
        }
    )
    return StoreRecorder(run_id, attempt, settings=settings)


def db_now() -> object:
    with session_scope() as session:
        return clock.now(session)


def heartbeat(run_id: int):
    with session_scope() as session:
        return clock.at(session.scalar(select(Run.heartbeat_at).where(Run.id == run_id)))


def read(run_id: int) -> Run:
    with session_scope() as session:
        return session.get_one(Run, run_id)


def staged_rows(run_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).where(Artifact.staged_for_run_id == run_id)) or 0


def shown_files(run_id: int) -> dict[str, str | None]:
    with session_scope() as session:
        return {a.name: a.sha256 for a in artifacts_service.list_run_artifacts(session, run_id)}


def stored_checkpoint(run_id: int) -> bytes | None:
    with session_scope() as session:
        return checkpoints.load(session, run_id)


class Reaper:
    """An upkeep running rounds in a thread, as the web and every worker do, with its store
    reached long enough ago that it gives up any run silent for a stale window."""

    def __init__(self) -> None:
        self.keeper = upkeep.Upkeep(
            session_scope=session_scope,
            send=lambda kind, run_id: f"task-{run_id}",
            settings=SimpleNamespace(
                preemption=False,  # these tests are not about setting runs aside
                stale_after_seconds=STALE,
                heartbeat_seconds=0.2,
                resend_after_seconds=600,
                import_timeout_seconds=900,
            ),
        )
        self.reaped: list[tuple[int, str]] = []
        self.rounds = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="reaper", daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            if self.keeper.store_up_since is not None:
                self.keeper.store_up_since -= 2 * STALE  # its own window passed long ago
            try:
                self.reaped += self.keeper.round()["reaped"]
            except Exception:  # a lock wait on a busy machine: the next round tries again
                continue
            self.rounds += 1

    def __enter__(self) -> Reaper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=scaled(60))


def test_a_checkpoint_write_held_for_three_stale_windows_keeps_its_attempt(
    store, monkeypatch, tmp_path
):
    run_id = running_run(store)
    data = os.urandom(3 * MIB + 12345)  # four chunks
    hold = Hold(monkeypatch, run_id, checkpoints.NAME)
    recorder = link(run_id)
    with Reaper() as reaper, recorder:
        recorder.epoch_ended("finetune", 1, {"loss": 0.5})
        recorder.checkpoint(FakeCheckpoint("finetune", 1, data))  # type: ignore[arg-type]
        hold.wait()
        started = db_now()
        # Three stale windows by the database's clock, the reaper going round all along.
        wait_for(
            lambda: db_now() - started > timedelta(seconds=3 * STALE),  # type: ignore[operator]
            timeout=3 * STALE + 120,
            what="three stale windows to pass",
        )
        rounds = reaper.rounds
        wait_for(lambda: reaper.rounds > rounds, timeout=60, what="one more reaper round")
        assert heartbeat(run_id) > started + timedelta(seconds=2 * STALE)  # type: ignore[operator]
        run = read(run_id)
        assert (run.status, run.attempts, run.checkpoint) == ("running", 1, None)
        assert shown_files(run_id) == {} and stored_checkpoint(run_id) is None  # staged: unseen
        assert staged_rows(run_id) == 1
        hold.release.set()
        wait_for(lambda: read(run_id).checkpoint, timeout=60, what="the checkpoint published")
        assert stored_checkpoint(run_id) == data
        assert shown_files(run_id) == {checkpoints.NAME: hashlib.sha256(data).hexdigest()}
        assert read(run_id).checkpoint["bytes"] == len(data)
        assert staged_rows(run_id) == 0
        # The job ends: its final write streams its result file in, then publishes it all.
        result_file = tmp_path / "model.keras"
        result_file.write_bytes(os.urandom(MIB + 7))
        spec = runner.RunSpec(run_id, "finetune", {}, store, None, None, 1, None)
        concluded = runner._conclude(
            spec, recorder, RunStatus.SUCCEEDED, {"accuracy": 0.5}, [result_file]
        )
    assert concluded == RunStatus.SUCCEEDED
    assert [r for r in reaper.reaped if r[0] == run_id] == []
    with session_scope() as session:
        tries = [(a.number, a.outcome) for a in runs_service.list_attempts(session, run_id)]
    assert tries == [(1, "succeeded")]
    want = hashlib.sha256(result_file.read_bytes()).hexdigest()
    assert shown_files(run_id) == {"model.keras": want}  # a succeeded run keeps no checkpoint
    assert staged_rows(run_id) == 0


def test_a_beat_lands_while_a_flush_is_in_flight(store, monkeypatch):
    run_id = running_run(store)
    hold = Hold(monkeypatch, run_id, checkpoints.NAME)
    recorder = link(run_id)
    with recorder:
        recorder.checkpoint(FakeCheckpoint("finetune", 1, os.urandom(2 * MIB)))  # type: ignore[arg-type]
        try:
            hold.wait()
            before = heartbeat(run_id)
            recorder.batch_ended(
                Progress(
                    "finetune", epoch=1, epochs=3, step=7, steps=10, images_per_sec=9, eta_seconds=5
                )
            )
            wait_for(
                lambda: heartbeat(run_id) > before and read(run_id).progress.get("step") == 7,
                timeout=60,
                what="a beat with the progress while the flush is held",
            )
        finally:
            hold.release.set()
        wait_for(lambda: read(run_id).checkpoint, timeout=60, what="the checkpoint published")
    assert recorder.stop_reason is None


def test_a_superseded_attempts_staged_checkpoint_never_becomes_visible(store, monkeypatch):
    run_id = running_run(store)
    first = os.urandom(MIB + 1)
    with session_scope() as session:
        attempts.fence(session, run_id, 1)
        checkpoints.save(
            session=session, run_id=run_id, attempt=1, data=first, stage="finetune", epoch=1
        )
    hold = Hold(monkeypatch, run_id, checkpoints.NAME)
    old = link(run_id, attempt=1)
    with old:
        old.checkpoint(FakeCheckpoint("finetune", 2, os.urandom(2 * MIB)))  # type: ignore[arg-type]
        try:
            hold.wait()
            assert staged_rows(run_id) == 1
            with session_scope() as session:  # the old worker froze: attempt 2 takes over
                attempts.hand_back(session=session, run_id=run_id, attempt=1, reason="test")
                claim = attempts.claim(
                    session=session, run_id=run_id, worker_host="h2", device="CPU", versions={}
                )
            assert claim is not None and claim.resume_from == {"stage": "finetune", "epoch": 1}
            assert staged_rows(run_id) == 0  # the claim discarded the old attempt's stream
        finally:
            hold.release.set()  # it wakes up and streams on
        wait_for(lambda: old.stop_reason, timeout=60, what="the old attempt to stop")
    assert old.stop_reason == "superseded"
    assert stored_checkpoint(run_id) == first
    assert read(run_id).checkpoint["epoch"] == 1
    assert staged_rows(run_id) == 0
    assert shown_files(run_id) == {checkpoints.NAME: hashlib.sha256(first).hexdigest()}


def test_the_sweep_drops_only_streams_no_attempt_can_publish(store):
    ended, deleted = running_run(store), running_run(store)

    def stage(run_id: int) -> int:
        return staging.stage_bytes(
            scope=session_scope, run_id=run_id, attempt=1, name="a.png", data=b"png"
        )

    live = stage(ended)
    stage(deleted)
    with session_scope() as session:
        staging.sweep(session)
    assert staged_rows(ended) == staged_rows(deleted) == 1  # their attempts own the runs
    for run_id in (ended, deleted):
        with session_scope() as session:
            attempts.finish(session=session, run_id=run_id, attempt=1, status=RunStatus.FAILED)
    with session_scope() as session:
        runs_service.delete_runs(session=session, run_ids=[deleted])
    with session_scope() as session:
        assert staging.sweep(session) >= 2
    assert staged_rows(ended) == staged_rows(deleted) == 0 and shown_files(ended) == {}
    with pytest.raises(AttemptSuperseded), session_scope() as session:
        staging.publish(session, run_id=ended, attempt=1, staged_id=live)
    with pytest.raises(AttemptSuperseded):
        stage(ended)  # an attempt that no longer owns the run streams nothing
    assert staged_rows(ended) == 0
