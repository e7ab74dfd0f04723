"""runs.source_run_id (the tune study a run's settings came from) and runs.archived

source_run_id has no foreign key on purpose: adding one makes SQLite rebuild the runs table
(batch mode), and dropping the old table would cascade into every run's metrics. Deleting
a run clears the references to it instead (store.runs.service).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (SQLite does it in place): never a table rebuild here.
    op.add_column("runs", sa.Column("source_run_id", sa.Integer(), nullable=True))
    op.create_index("ix_runs_source_run_id", "runs", ["source_run_id"])
    op.add_column(
        "runs", sa.Column("archived", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_index("ix_runs_archived", "runs", ["archived"])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_archived")
        batch_op.drop_column("archived")
        batch_op.drop_index("ix_runs_source_run_id")
        batch_op.drop_column("source_run_id")
