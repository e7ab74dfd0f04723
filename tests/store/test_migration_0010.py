"""Migration 0010 over files stored by 0009's schema: every artifact stays a published one
(both staging columns NULL, still its run's), and the downgrade drops what was still
staged (with its chunks) and keeps the rest."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from store.db import alembic_config

NEW_COLUMNS = {"staged_for_run_id", "staged_attempt"}


def _columns(engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("artifacts")}


def _run(conn, run_id: int, now: datetime) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO runs (id, kind, name, tags, status, params, seed, dataset_id, "
            "created_at, cancel_requested, versions, progress, result, attempts) VALUES "
            "(:id, 'finetune', 'r', '[]', 'running', '{}', 0, 1, :now, false, "
            "'{}', '{}', '{}', 1)"
        ),
        {"id": run_id, "now": now},
    )


def _artifact(conn, artifact_id: int, run_id: int | None, now: datetime, **staged) -> None:
    columns = "".join(f", {name}" for name in staged)
    values = "".join(f", :{name}" for name in staged)
    conn.execute(
        sa.text(
            f"INSERT INTO artifacts (id, run_id, name, kind, size, created_at{columns}) "
            f"VALUES (:id, :run_id, 'checkpoint.npz', 'checkpoint', 5, :now{values})"
        ),
        {"id": artifact_id, "run_id": run_id, "now": now, **staged},
    )
    conn.execute(
        sa.text("INSERT INTO artifact_chunks (artifact_id, seq, data) VALUES (:id, 0, :data)"),
        {"id": artifact_id, "data": b"bytes"},
    )


def test_0010_keeps_every_file_published_and_goes_down_dropping_only_staged_ones(url):
    config = alembic_config(url)
    command.upgrade(config, "0009")
    engine = sa.create_engine(url)
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
        _run(conn, 1, now)
        _artifact(conn, 10, 1, now)
    assert not NEW_COLUMNS & _columns(engine)

    command.upgrade(config, "0010")
    assert _columns(engine) >= NEW_COLUMNS
    with engine.begin() as conn:
        row = conn.execute(
            sa.text("SELECT run_id, staged_for_run_id, staged_attempt FROM artifacts")
        ).one()
        assert tuple(row) == (1, None, None)
        _run(conn, 2, now)
        _artifact(conn, 11, None, now, staged_for_run_id=1, staged_attempt=1)
        _artifact(conn, 12, None, now, staged_for_run_id=2, staged_attempt=1)

    command.downgrade(config, "0009")
    assert not NEW_COLUMNS & _columns(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM artifacts")).scalars().all() == [10]
        chunks = conn.execute(sa.text("SELECT artifact_id FROM artifact_chunks")).scalars()
        assert sorted(chunks) == [10]
    command.upgrade(config, "head")
    engine.dispose()
