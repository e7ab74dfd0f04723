"""Migration 0011 over runs stored by 0009's schema: a run stuck queued with a cancel pending
(a cancel that landed during a hand-back, before the fix) becomes cancelled, every other run
is kept as it was, and from then on the database refuses that state; down and up again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from store.db import alembic_config

FINISHED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
# id -> (status, cancel_requested, finished_at) as 0009 stored them
ROWS = {
    1: ("queued", True, None),  # stuck: no worker claims it, re-queue refused it
    2: ("queued", False, None),
    3: ("running", True, None),  # stops at its next batch
    4: ("cancelled", True, FINISHED),
}


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
        for run_id, (status, cancel, finished) in ROWS.items():
            conn.execute(
                sa.text(
                    "INSERT INTO runs (id, kind, name, tags, status, params, seed, dataset_id, "
                    "created_at, cancel_requested, versions, progress, result, attempts, "
                    "finished_at) VALUES (:id, 'finetune', 'r', '[]', :status, '{}', 0, 1, "
                    ":now, :cancel, '{}', '{}', '{}', 1, :finished)"
                ),
                {
                    "id": run_id,
                    "status": status,
                    "now": now,
                    "cancel": cancel,
                    "finished": finished,
                },
            )


def _runs(engine) -> dict[int, tuple[str, bool, datetime | None]]:
    runs = sa.table(
        "runs",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("cancel_requested", sa.Boolean),
        sa.column("finished_at", sa.DateTime(timezone=True)),
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(runs).order_by(runs.c.id)).all()
    return {row.id: (row.status, bool(row.cancel_requested), row.finished_at) for row in rows}


def _refuses_queued_with_a_cancel(engine) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE runs SET cancel_requested = true WHERE id = 2"))
    except sa.exc.IntegrityError:
        return True
    with engine.begin() as conn:  # let in: put it back
        conn.execute(sa.text("UPDATE runs SET cancel_requested = false WHERE id = 2"))
    return False


def test_0011_cancels_runs_stuck_queued_with_a_cancel_and_then_refuses_that_state(url):
    config = alembic_config(url)
    command.upgrade(config, "0009")
    engine = sa.create_engine(url)
    _fill(engine)
    assert not _refuses_queued_with_a_cancel(engine)

    command.upgrade(config, "0011")

    runs = _runs(engine)
    status, cancel, finished = runs.pop(1)
    assert (status, cancel) == ("cancelled", True) and finished is not None
    assert {run_id: row[:2] for run_id, row in runs.items()} == {
        run_id: row[:2] for run_id, row in ROWS.items() if run_id != 1
    }
    finished_4 = runs[4][2]
    assert finished_4 is not None
    assert finished_4.replace(tzinfo=UTC) == FINISHED  # SQLite reads it back naive
    assert _refuses_queued_with_a_cancel(engine)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # re-queued, cancel kept
        conn.execute(sa.text("UPDATE runs SET status = 'queued' WHERE id = 3"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, kind, name, tags, status, params, seed, dataset_id, "
                "created_at, cancel_requested, versions, progress, result, attempts) VALUES "
                "(9, 'finetune', 'r', '[]', 'queued', '{}', 0, 1, :now, true, '{}', '{}', "
                "'{}', 0)"
            ),
            {"now": datetime.now(UTC)},
        )
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # 0007's guard kept
        conn.execute(sa.text("UPDATE runs SET status = 'paused' WHERE id = 2"))

    command.downgrade(config, "-1")
    assert not _refuses_queued_with_a_cancel(engine)
    command.upgrade(config, "head")
    assert _refuses_queued_with_a_cancel(engine)
    assert len(_runs(engine)) == len(ROWS)
    engine.dispose()
