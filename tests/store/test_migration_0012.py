"""Migration 0012 over runs, attempts and workers stored by 0011's schema: every row is kept
and gets the scheduler's defaults (priority 0, no GPU asked for, nothing set aside; workers
on the training lane); the database then keeps priorities in range, GPU memory positive,
lanes known and accepts a "preempted" attempt; down and up again."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from store.db import alembic_config


def _fill(engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO datasets (id, name, source, fingerprint, n_train, n_test, "
                "image_shape, class_names, train_counts, test_counts, created_at) VALUES "
                "(1, 'd', 'demo', 'f', 1, 1, '[]', '[]', '{}', '{}', :now)"
            ),
            {"now": now},
        )
        for run_id, status in ((1, "queued"), (2, "running"), (3, "succeeded")):
            conn.execute(
                sa.text(
                    "INSERT INTO runs (id, kind, name, tags, status, params, seed, dataset_id, "
                    "created_at, cancel_requested, versions, progress, result, attempts) "
                    "VALUES (:id, 'finetune', 'r', '[]', :status, '{}', 0, 1, :now, false, "
                    "'{}', '{}', '{}', 1)"
                ),
                {"id": run_id, "status": status, "now": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO run_attempts (run_id, number, started_at, outcome) "
                    "VALUES (:id, 1, :now, 'interrupted')"
                ),
                {"id": run_id, "now": now},
            )
        conn.execute(
            sa.text(
                "INSERT INTO workers (name, host, device, started_at, last_seen) "
                "VALUES ('w@h', 'h', 'CPU', :now, :now)"
            ),
            {"now": now},
        )


def _refused(engine, statement: str) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    except sa.exc.IntegrityError:
        return True
    return False


def test_0012_keeps_every_row_with_the_defaults_and_guards_the_new_columns(url):
    config = alembic_config(url)
    command.upgrade(config, "0011")
    engine = sa.create_engine(url)
    _fill(engine)
    command.upgrade(config, "0012")
    with engine.connect() as conn:
        runs = conn.execute(
            sa.text(
                "SELECT id, status, priority, needs_gpu, min_gpu_memory_mb, set_aside_for "
                "FROM runs ORDER BY id"
            )
        ).all()
        lanes = conn.execute(sa.text("SELECT lane, gpu_memory_mb FROM workers")).all()
    assert [(r.id, r.status) for r in runs] == [(1, "queued"), (2, "running"), (3, "succeeded")]
    assert {
        (r.priority, bool(r.needs_gpu), r.min_gpu_memory_mb, r.set_aside_for) for r in runs
    } == {(0, False, None, None)}
    assert [tuple(row) for row in lanes] == [("training", None)]

    assert _refused(engine, "UPDATE runs SET priority = 1001 WHERE id = 1")
    assert _refused(engine, "UPDATE runs SET priority = -1001 WHERE id = 1")
    assert not _refused(engine, "UPDATE runs SET priority = 1000 WHERE id = 1")
    assert _refused(engine, "UPDATE runs SET min_gpu_memory_mb = 0 WHERE id = 1")
    assert not _refused(engine, "UPDATE runs SET min_gpu_memory_mb = 16000 WHERE id = 1")
    assert _refused(engine, "UPDATE workers SET lane = 'gpu'")
    assert not _refused(engine, "UPDATE workers SET lane = 'cpu'")
    assert not _refused(engine, "UPDATE run_attempts SET outcome = 'preempted' WHERE run_id = 1")
    assert _refused(engine, "UPDATE run_attempts SET outcome = 'paused' WHERE run_id = 1")

    command.downgrade(config, "0011")  # a preempted attempt reads as interrupted before 0012
    with engine.connect() as conn:
        outcomes = conn.execute(sa.text("SELECT outcome FROM run_attempts ORDER BY run_id"))
        assert [row[0] for row in outcomes] == ["interrupted"] * 3
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 3
    assert _refused(engine, "UPDATE run_attempts SET outcome = 'preempted' WHERE run_id = 2")
    command.upgrade(config, "head")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 3
    engine.dispose()
