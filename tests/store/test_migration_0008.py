"""Migration 0008 over data written by 0007's schema: the old "system/<name>" metric rows
(seconds stored as epochs) become run samples, and the metrics keep epochs only."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from store.db import alembic_config


def _old_run(conn, run_id: int, attempts: int) -> None:
    """A cancelled finetune of 0007's schema: 2 epochs and 3 system samples as metrics."""
    conn.execute(
        sa.text(
            "INSERT INTO runs (id, kind, name, tags, status, params, seed, dataset_id, "
            "created_at, cancel_requested, versions, progress, result, attempts) VALUES "
            "(:id, 'finetune', 'r', '[]', 'cancelled', '{}', 0, 1, :now, false, '{}', '{}', "
            "'{}', :attempts)"
        ),
        {"id": run_id, "now": datetime.now(UTC), "attempts": attempts},
    )
    rows = [("finetune/loss", 1, 1.0), ("finetune/loss", 2, 0.8)]
    rows += [("system/rss_mb", t, 900.0 + t) for t in (0, 5, 236)]
    rows += [("system/cpu_percent", t, 150.0) for t in (0, 5, 236)]
    for key, step, value in rows:
        conn.execute(
            sa.text(
                "INSERT INTO metrics (run_id, key, step, value, wall_time) "
                "VALUES (:r, :k, :s, :v, :w)"
            ),
            {"r": run_id, "k": key, "s": step, "v": value, "w": 1000.0 + step},
        )
    for key, last in (("finetune/loss", 2), ("system/rss_mb", 236), ("system/cpu_percent", 236)):
        conn.execute(
            sa.text(
                "INSERT INTO metric_summaries (run_id, key, last_value, last_step, "
                "best_value, best_step, kept_value, kept_step, goal) "
                "VALUES (:r, :k, 1, :s, 1, :s, 1, :s, 'min')"
            ),
            {"r": run_id, "k": key, "s": last},
        )


def test_0008_moves_the_old_system_metrics_into_run_samples(url):
    config = alembic_config(url)
    command.upgrade(config, "0007")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO datasets (id, name, source, fingerprint, n_train, n_test, "
                "image_shape, class_names, train_counts, test_counts, created_at) VALUES "
                "(1, 'd', 'demo', 'f', 1, 1, '[]', '[]', '{}', '{}', :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        _old_run(conn, 1, attempts=1)
        _old_run(conn, 2, attempts=2)  # resumed: the old rows are the current attempt's

    command.upgrade(config, "0008")

    with engine.connect() as conn:
        samples = conn.execute(
            sa.text(
                "SELECT run_id, attempt, key, t, value, wall_time FROM run_samples "
                "ORDER BY run_id, key, t"
            )
        ).all()
        metrics = conn.execute(sa.text("SELECT DISTINCT key FROM metrics")).scalars().all()
        summaries = conn.execute(sa.text("SELECT key FROM metric_summaries")).scalars().all()
    expected = []
    for run_id, attempt in ((1, 1), (2, 2)):
        expected += [(run_id, attempt, "cpu_percent", t, 150.0, 1000.0 + t) for t in (0, 5, 236)]
        expected += [(run_id, attempt, "rss_mb", t, 900.0 + t, 1000.0 + t) for t in (0, 5, 236)]
    assert [tuple(row) for row in samples] == expected
    assert metrics == ["finetune/loss"]  # epochs only: no seconds left among them
    assert sorted(summaries) == ["finetune/loss", "finetune/loss"]

    # Down again: the samples are metrics as before (without summaries); up: samples again.
    command.downgrade(config, "0007")
    with engine.connect() as conn:
        back = conn.execute(
            sa.text("SELECT run_id, key, step FROM metrics WHERE key LIKE 'system/%'")
        ).all()
        assert len(back) == 12
    command.upgrade(config, "head")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM run_samples")).scalar() == 12
        # A run's samples go with it (ON DELETE CASCADE; SQLite enforces it per connection).
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.execute(sa.text("DELETE FROM metric_summaries WHERE run_id = 1"))
        conn.execute(sa.text("DELETE FROM metrics WHERE run_id = 1"))
        conn.execute(sa.text("DELETE FROM runs WHERE id = 1"))
        left = conn.execute(sa.text("SELECT DISTINCT run_id FROM run_samples")).scalars().all()
        assert left == [2]
        conn.rollback()
    engine.dispose()
