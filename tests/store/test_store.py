"""Runs, metrics, artifacts and data sets in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from datetime import timedelta

import numpy as np
import pytest

from store.artifacts import service as artifacts_service
from store.datasets import service as datasets_service
from store.db import session_scope
from store.errors import InvalidRequest
from store.runs import attempts, upkeep
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.models import Run
from store.timeutil import utcnow


def new_run(dataset_id: int, params: dict | None = None, kind: str = "pretrain", **fields) -> int:
    with session_scope() as session:
        return runs_service.create_run(
            session=session,
            kind=kind,
            name="t",
            params=params or {},
            dataset_id=dataset_id,
            **fields,
        ).id


def claim(run_id: int):
    with session_scope() as session:
        return attempts.claim(
            session=session, run_id=run_id, worker_host="h:1", device="CPU", versions={"keras": "3"}
        )


def test_a_run_is_claimed_once(store):
    run_id = new_run(store)
    assert claim(run_id).attempt == 1
    assert claim(run_id) is None  # a second worker gets nothing


def test_a_cancelled_queued_run_cannot_be_claimed(store):
    run_id = new_run(store)
    with session_scope() as session:
        assert runs_service.request_cancel(session=session, run_id=run_id).status == "cancelled"
    assert claim(run_id) is None
    with session_scope() as session, pytest.raises(InvalidRequest, match="cancelled already"):
        runs_service.request_cancel(session=session, run_id=run_id)


def test_summary_keeps_the_best_epoch_not_just_the_last(store):
    run_id = new_run(store)
    for epoch, (loss, acc) in enumerate([(1.0, 0.2), (0.5, 0.6), (0.7, 0.5)], start=1):
        with session_scope() as session:
            metrics_service.log_epoch(
                session=session,
                run_id=run_id,
                stage="finetune",
                step=epoch,
                values={"val_loss": loss, "val_accuracy": acc},
            )
    with session_scope() as session:
        summary = metrics_service.summaries(session, run_id)
        series = metrics_service.series(session, run_id, ["finetune/val_loss"])
    assert summary["finetune/val_loss"] == {
        "last_value": 0.7,
        "last_step": 3,
        "best_value": 0.5,
        "best_step": 2,
        "kept_value": 0.7,  # a pretrain keeps its last epoch
        "kept_step": 3,
        "goal": "min",
    }
    assert summary["finetune/val_accuracy"]["best_value"] == 0.6
    assert series == {"finetune/val_loss": [(1, 1.0), (2, 0.5), (3, 0.7)]}


EPOCHS = [  # val_loss, val_accuracy, val_balanced_accuracy
    (1.0, 0.50, 0.30),
    (0.8, 0.55, 0.32),  # val_loss's best: what early stopping on val_loss restores
    (0.9, 0.60, 0.36),  # the best val_accuracy of any epoch, but not the kept model
    (0.85, 0.58, 0.361),  # balanced accuracy up by 0.001: below a min_delta of 0.01
]


def _finetune_with(store, stopping: dict) -> int:
    run_id = new_run(store, params={"early_stopping": stopping}, kind="finetune")
    for epoch, (loss, acc, balanced) in enumerate(EPOCHS, start=1):
        with session_scope() as session:
            metrics_service.log_epoch(
                session=session,
                run_id=run_id,
                stage="finetune",
                step=epoch,
                values={"val_loss": loss, "val_accuracy": acc, "val_balanced_accuracy": balanced},
            )
    return run_id


def _kept(run_id: int) -> dict:
    with session_scope() as session:
        summary = metrics_service.summaries(session, run_id)
    return {key: (s["kept_value"], s["kept_step"]) for key, s in summary.items()}


@pytest.mark.parametrize(
    ("stopping", "step"),
    [
        ({"monitor": "val_loss"}, 2),
        ({"monitor": "val_accuracy"}, 3),
        ({"monitor": "val_balanced_accuracy"}, 4),
        ({"monitor": "val_balanced_accuracy", "min_delta": 0.01}, 3),
        ({"monitor": "val_loss", "restore_best_weights": False}, 4),  # the last epoch is kept
    ],
)
def test_best_is_the_epoch_early_stopping_keeps(store, stopping, step):
    """Lists and compares show the kept epoch's values (Keras' rule, min_delta included),
    also after the summaries are rebuilt from the rows."""
    run_id = _finetune_with(store, stopping)
    loss, acc, balanced = EPOCHS[step - 1]
    expected = {
        "finetune/val_loss": (loss, step),
        "finetune/val_accuracy": (acc, step),
        "finetune/val_balanced_accuracy": (balanced, step),
    }
    assert _kept(run_id) == expected
    with session_scope() as session:
        metrics_service.rebuild_summaries(session, run_id)
    assert _kept(run_id) == expected
    with session_scope() as session:
        from backend.runs import views

        run = session.get(Run, run_id)
        summaries = views._summaries(session, [run_id])[run_id]
        best = views.best_of(run, summaries)
    assert (best["value"], best["epoch"]) == (acc, step)  # "val acc" at the kept epoch


def test_runs_without_a_heartbeat_are_reaped_and_can_be_requeued(store):
    run_id = new_run(store, params={"runtime": {"max_attempts": 1}})
    claim(run_id)
    fresh = new_run(store)
    claim(fresh)
    with session_scope() as session:
        session.get(Run, run_id).heartbeat_at = utcnow() - timedelta(seconds=120)
    with session_scope() as session:
        reaped = upkeep.reap_stale(session=session, stale_after=60)
        # Only this test's runs: the module's other tests share the database.
        assert [r for r in reaped if r[0] in (run_id, fresh)] == [(run_id, "failed")]
        assert session.get(Run, fresh).status == "running"
        assert "stopped responding" in session.get(Run, run_id).error
        assert [a.outcome for a in runs_service.list_attempts(session, run_id)] == ["lost"]
    with session_scope() as session:
        run = runs_service.requeue(session=session, run_id=run_id)
        assert (run.status, run.error) == ("queued", None)


def test_artifacts_stream_in_bounded_memory_and_keep_their_checksum(store, tmp_path):
    source = tmp_path / "big.weights.h5"
    size = 48 * 1024 * 1024
    with source.open("wb") as fh:  # random, so no layer can compress it away
        for _ in range(size // (4 * 1024 * 1024)):
            fh.write(os.urandom(4 * 1024 * 1024))
    run_id = new_run(store)
    tracemalloc.start()
    with session_scope() as session:
        artifact = artifacts_service.store_file(session=session, path=source, run_id=run_id)
        artifact_id, sha = artifact.id, artifact.sha256
    _, store_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    digest, total = hashlib.sha256(), 0
    with session_scope() as session:
        for chunk in artifacts_service.iter_chunks(session, artifact_id):
            digest.update(chunk)
            total += len(chunk)
    _, read_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == size and digest.hexdigest() == sha
    assert sha == hashlib.sha256(source.read_bytes()).hexdigest()
    # A whole copy would be 48 MiB; a few 1 MiB chunks in flight is what streaming allows.
    assert store_peak < 12 * 1024 * 1024, store_peak
    assert read_peak < 12 * 1024 * 1024, read_peak
    with session_scope() as session:
        kind = artifacts_service.run_artifact(session, run_id, "big.weights.h5").kind
    assert kind == "weights"


def test_a_dataset_is_fetched_once_into_the_cache_by_fingerprint(store, tmp_path):
    from worker.ml.datasets.npz import load_saved

    with session_scope() as session:
        first = datasets_service.fetch_to_cache(
            session=session, dataset_id=store, cache_dir=tmp_path
        )
        # An old stamp: a second fetch that wrote the file again would give it "now".
        mtime = first.stat().st_mtime_ns - 3_600 * 10**9
        os.utime(first, ns=(mtime, mtime))
        second = datasets_service.fetch_to_cache(
            session=session, dataset_id=store, cache_dir=tmp_path
        )
        record = datasets_service.get(session, store)
    assert first == second and second.stat().st_mtime_ns == mtime
    loaded = load_saved(first)
    assert loaded.fingerprint() == record.fingerprint == first.stem
    assert np.array_equal(np.bincount(loaded.y_train), list(record.train_counts.values()))


def test_dataset_names_are_unique(store, tmp_path):
    with session_scope() as session:
        record = datasets_service.get(session, store)
        with pytest.raises(InvalidRequest, match="exists already"):
            datasets_service.register(
                session=session, name=record.name, summary={}, arrays=tmp_path
            )


def test_the_migrations_match_the_models(store):
    from alembic import command

    from store.db import alembic_config
    from store.settings import get_settings

    # Raises when the ORM models and the Alembic history disagree (Optuna's tables aside).
    command.check(alembic_config(get_settings().sqlalchemy_url))


@pytest.mark.parametrize("store", ["postgres"], indirect=True)  # SQLite pings nothing
def test_a_pooled_connection_whose_ping_fails_oddly_is_replaced(store, monkeypatch):
    """A ping that fails with something else than a disconnect error (psycopg's
    ProgrammingError on a socket cut mid-ping) still counts as a dead connection."""
    import sqlalchemy as sa

    from store.db import get_engine

    engine = get_engine()
    with engine.connect() as conn:  # one connection in the pool
        conn.execute(sa.text("SELECT 1"))
    real_ping = engine.dialect.do_ping
    calls = []

    def odd_ping(dbapi_connection):
        calls.append(1)
        if len(calls) == 1:
            raise engine.dialect.loaded_dbapi.ProgrammingError("can't change 'autocommit' now")
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", odd_ping)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    assert calls  # the ping ran and its failure was survived
