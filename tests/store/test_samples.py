"""Run samples through the run's link: fenced by attempt like every worker write, buffered
and retried through a store outage, stored once however often they are sent, and read back
as one timeline across attempts. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import exc

import worker.recorder as recorder_module
from jobspec.status import RunStatus
from store.db import session_scope
from store.errors import AttemptSuperseded
from store.runs import attempts
from store.runs import metrics as metrics_service
from store.runs import samples as samples_service
from store.runs import service as runs_service
from store.settings import get_settings
from tests.stack import wait_for
from worker.recorder import StoreRecorder


def running_run(dataset_id: int) -> int:
    with session_scope() as session:
        run_id = runs_service.create_run(
            session=session, kind="finetune", name="sampled", params={}, dataset_id=dataset_id
        ).id
        attempts.claim(session=session, run_id=run_id, worker_host="h", device="CPU", versions={})
    return run_id


def stored(run_id: int) -> dict[str, samples_service.Series]:
    with session_scope() as session:
        return samples_service.series(session, run_id)


def flush(recorder: StoreRecorder) -> None:
    """The link's write of what is pending, fenced by its attempt (the final write's path)."""
    pending = recorder.take_pending()
    with session_scope() as session:
        attempts.fence(session, recorder.run_id, recorder.attempt)
        pending.write(session, recorder.run_id, recorder.attempt)


def test_samples_are_fenced_by_their_attempt(store):
    run_id = running_run(store)
    old = StoreRecorder(run_id, 1, settings=get_settings())
    old.sampled(0.0, {"rss_mb": 900.0})
    flush(old)
    with session_scope() as session:  # back in the queue: attempt 2 takes the run over
        attempts.hand_back(session=session, run_id=run_id, attempt=1, reason="test")
        claim = attempts.claim(
            session=session, run_id=run_id, worker_host="h2", device="CPU", versions={}
        )
    assert claim is not None and claim.attempt == 2
    old.sampled(5.0, {"rss_mb": 950.0})
    with pytest.raises(AttemptSuperseded):
        flush(old)
    new = StoreRecorder(run_id, 2, settings=get_settings())
    new.sampled(0.0, {"rss_mb": 700.0})
    flush(new)
    rss = stored(run_id)["rss_mb"]
    assert rss.values == [900.0, 700.0] and rss.attempts == [1, 2]  # the old attempt's 2nd: refused
    assert rss.seconds[1] >= rss.seconds[0]  # attempt 2 after attempt 1 on one time axis


def test_samples_wait_out_a_store_outage_and_land_once(store, monkeypatch):
    run_id = running_run(store)
    real = recorder_module.session_scope
    outage, refused = threading.Event(), threading.Event()
    outage.set()

    def flaky():
        if outage.is_set():
            refused.set()
            raise exc.OperationalError("SELECT 1", {}, Exception("the database is restarting"))
        return real()

    monkeypatch.setattr(recorder_module, "session_scope", flaky)
    recorder = StoreRecorder(run_id, 1, settings=get_settings())
    for t in range(5):  # pending before the link starts: its first write meets the outage
        recorder.sampled(float(t * 5), {"rss_mb": 900.0 + t, "cpu_percent": 100.0})
    with recorder:
        wait_for(refused.is_set, timeout=30, what="a write refused by the outage")
        assert stored(run_id) == {}  # nothing landed, nothing lost: still buffered
        outage.clear()
        wait_for(lambda: "rss_mb" in stored(run_id), timeout=60, what="the buffered samples")
        with session_scope() as session:  # the same readings sent again change nothing
            samples_service.record(
                session=session,
                run_id=run_id,
                attempt=1,
                readings=[(0.0, 0.0, {"rss_mb": 1.0})],
            )
    series = stored(run_id)
    assert series["rss_mb"].seconds == [0, 5, 10, 15, 20]
    assert series["rss_mb"].values == [900.0, 901.0, 902.0, 903.0, 904.0]
    with session_scope() as session:
        assert metrics_service.series(session, run_id) == {}  # never through the epochs


def test_a_deleted_run_takes_its_samples_along(store):
    run_id = running_run(store)
    recorder = StoreRecorder(run_id, 1, settings=get_settings())
    recorder.sampled(0.0, {"rss_mb": 900.0})
    flush(recorder)
    with session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status=RunStatus.CANCELLED)
    with session_scope() as session:
        assert runs_service.delete_runs(session=session, run_ids=[run_id]) == {run_id: None}
    assert stored(run_id) == {}


def test_a_flush_after_a_long_outage_stores_every_buffered_sample(store):
    """The most a link buffers (MAX_BUFFERED_SAMPLES readings of four series) in one write:
    48,000 bound values, more than many SQLite builds take in one statement."""
    run_id = running_run(store)
    keys = ("rss_mb", "cpu_percent", "gpu_util", "gpu_mem_mb")
    readings = [
        (float(t), 0.0, dict.fromkeys(keys, 1.0))
        for t in range(recorder_module.MAX_BUFFERED_SAMPLES)
    ]
    with session_scope() as session:
        samples_service.record(session=session, run_id=run_id, attempt=1, readings=readings)
    series = stored(run_id)
    assert sorted(series) == sorted(keys)
    assert all(len(s.values) == recorder_module.MAX_BUFFERED_SAMPLES for s in series.values())
