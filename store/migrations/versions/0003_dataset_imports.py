"""dataset_imports: an import's lifecycle in a table (queued, running, done, failed)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ACTIVE = sa.text("state IN ('queued', 'running')")


def upgrade() -> None:
    op.create_table(
        "dataset_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=True),
        sa.Column("resize", sa.Boolean(), nullable=False),
        sa.Column("upload_artifact_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_imports_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["upload_artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_dataset_imports_upload_artifact_id_artifacts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_imports")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("dataset_imports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_imports_state"), ["state"], unique=False)
        batch_op.create_index(
            "uq_dataset_imports_active_name",
            ["name"],
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        )
    _adopt_pending_uploads()
    _drop_leftovers()


def _drop_leftovers() -> None:
    """Old `import-<id>.error` artifacts (an import's outcome lives in its row now) and a
    second upload pending under a name already adopted: deleted, chunks first."""
    bind = op.get_bind()
    leftovers = (
        "SELECT id FROM artifacts WHERE kind = 'import-error' OR (kind = 'upload' AND id NOT IN "
        "(SELECT upload_artifact_id FROM dataset_imports WHERE upload_artifact_id IS NOT NULL))"
    )
    bind.execute(sa.text(f"DELETE FROM artifact_chunks WHERE artifact_id IN ({leftovers})"))
    bind.execute(sa.text(f"DELETE FROM artifacts WHERE id IN ({leftovers})"))


def _adopt_pending_uploads() -> None:
    """Uploads waiting when this runs become queued imports under their own id (the id
    their queue message carries); never sent, so the upkeep sends them again."""
    bind = op.get_bind()
    uploads = bind.execute(
        sa.text("SELECT id, name, created_at FROM artifacts WHERE kind = 'upload' ORDER BY id")
    ).all()
    table = sa.table(
        "dataset_imports",
        *(sa.column(c) for c in ("id", "name", "file_name", "source", "resize")),
        *(sa.column(c) for c in ("upload_artifact_id", "state", "created_at")),
    )
    seen: set[str] = set()
    for artifact_id, path, created_at in uploads:
        name, _, file_name = path.partition("/")
        if name in seen:  # one active import per name
            continue
        seen.add(name)
        source = "cifar10" if file_name == "cifar10" else None
        bind.execute(
            table.insert().values(
                id=artifact_id,
                name=name,
                file_name=file_name,
                source=source,
                resize=False,
                upload_artifact_id=artifact_id,
                state="queued",
                created_at=created_at,
            )
        )
    if uploads and bind.dialect.name == "postgresql":  # the next id goes past the adopted ones
        bind.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('dataset_imports', 'id'), "
                "(SELECT MAX(id) FROM dataset_imports))"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("dataset_imports", schema=None) as batch_op:
        batch_op.drop_index("uq_dataset_imports_active_name")
        batch_op.drop_index(batch_op.f("ix_dataset_imports_state"))
    op.drop_table("dataset_imports")
