"""Migrations over data written by the previous schema: imports pending when 0003 runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from store.db import alembic_config
from worker.devstack import create_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    url, drop = create_pg_database()
    yield url
    drop()


def _artifact(conn, artifact_id: int, name: str, kind: str, data: bytes) -> None:
    now = datetime.now(UTC)
    conn.execute(
        sa.text(
            "INSERT INTO artifacts (id, name, kind, size, created_at) "
            "VALUES (:id, :name, :kind, :size, :now)"
        ),
        {"id": artifact_id, "name": name, "kind": kind, "size": len(data), "now": now},
    )
    conn.execute(
        sa.text("INSERT INTO artifact_chunks (artifact_id, seq, data) VALUES (:id, 0, :data)"),
        {"id": artifact_id, "data": data},
    )


def test_0003_adopts_pending_uploads_and_drops_the_old_error_files(url):
    config = alembic_config(url)
    command.upgrade(config, "0002")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _artifact(conn, 5, "cats/cats.npz", "upload", b"npz bytes")
        _artifact(conn, 6, "cats/again.npz", "upload", b"second upload, same name")
        _artifact(conn, 7, "import-3.error", "import-error", b"an old failure")
        _artifact(conn, 8, "weights.h5", "weights", b"a run's file stays")

    command.upgrade(config, "head")

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, name, file_name, state, upload_artifact_id FROM dataset_imports")
        ).all()
        assert [tuple(r) for r in rows] == [(5, "cats", "cats.npz", "queued", 5)]
        left = conn.execute(sa.text("SELECT id FROM artifacts ORDER BY id")).scalars().all()
        assert left == [5, 8]
        chunks = conn.execute(sa.text("SELECT artifact_id FROM artifact_chunks")).scalars()
        assert sorted(chunks) == [5, 8]
    # and back down and up again
    command.downgrade(config, "0002")
    command.upgrade(config, "head")
    engine.dispose()
