"""fenced attempts, checkpoints, re-sends; one metric row per (run, key, step)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_attempts", sa.Integer(), server_default="2", nullable=False)
        )
        batch_op.add_column(
            sa.Column("retries_left", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("fresh_start", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("checkpoint", sa.JSON(), nullable=True))
    op.execute("UPDATE runs SET queued_at = created_at, sent_at = created_at")

    op.create_table(
        "run_attempts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("worker_host", sa.String(length=200), nullable=True),
        sa.Column("device", sa.String(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("resumed_from", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_attempts_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "number", name=op.f("pk_run_attempts")),
    )

    # Runs written twice by two attempts before this migration: keep the newest row.
    op.execute(
        "DELETE FROM metrics WHERE id NOT IN "
        "(SELECT keep FROM (SELECT MAX(id) AS keep FROM metrics GROUP BY run_id, key, step) k)"
    )
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_metrics_run_key_step")
        batch_op.create_unique_constraint("uq_metrics_run_key_step", ["run_id", "key", "step"])


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_constraint("uq_metrics_run_key_step", type_="unique")
        batch_op.create_index("ix_metrics_run_key_step", ["run_id", "key", "step"], unique=False)
    op.drop_table("run_attempts")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for column in ("checkpoint", "fresh_start", "sent_at", "queued_at", "retries_left"):
            batch_op.drop_column(column)
        batch_op.drop_column("max_attempts")
