"""Migration 0009 over a run stored by 0008's schema: planned_epochs is NULL (counted as 0
by the queued sums), no evaluation is marked queued, and the downgrade keeps the run."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from store.db import alembic_config

NEW_COLUMNS = {"planned_epochs", "evaluation_queued_at", "evaluation_task_id"}


def _columns(engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("runs")}


def test_0009_adds_planned_epochs_as_null_and_goes_down_keeping_the_run(url):
    config = alembic_config(url)
    command.upgrade(config, "0008")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        now = datetime.now(UTC)
        conn.execute(
            sa.text(
                "INSERT INTO datasets (id, name, source, fingerprint, n_train, n_test, "
                "image_shape, class_names, train_counts, test_counts, created_at) VALUES "
                "(1, 'd', 'demo', 'f', 1, 1, '[]', '[]', '{}', '{}', :now)"
            ),
            {"now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, kind, name, tags, status, params, seed, dataset_id, "
                "created_at, cancel_requested, versions, progress, result, attempts) VALUES "
                "(1, 'finetune', 'r', '[]', 'queued', '{\"epochs\": 7}', 0, 1, :now, false, "
                "'{}', '{}', '{}', 0)"
            ),
            {"now": now},
        )
    assert not NEW_COLUMNS & _columns(engine)

    command.upgrade(config, "0009")
    assert _columns(engine) >= NEW_COLUMNS
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT planned_epochs, evaluation_queued_at FROM runs WHERE id = 1")
        ).one()
        assert tuple(row) == (None, None)
        # what store/runs/limits.py check_epochs sums: a NULL counts as 0
        queued = conn.execute(
            sa.text("SELECT coalesce(sum(coalesce(planned_epochs, 0)), 0) FROM runs")
        ).scalar()
        assert queued == 0

    command.downgrade(config, "0008")
    assert not NEW_COLUMNS & _columns(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM runs WHERE id = 1")).scalar() == "r"
    command.upgrade(config, "head")
    engine.dispose()
