"""artifacts.staged_for_run_id / staged_attempt: a run's file streamed in before it is shown

A worker streams a checkpoint or a result file into an artifact with run_id NULL and
staged_for_run_id / staged_attempt naming the attempt writing it, one chunk per short
transaction; one short fenced transaction then gives it its run_id (store.runs.staging).
No listing or download sees it before: they all select by run_id or dataset_id. Rows
written before this are published files: both columns NULL.

Plain ALTER TABLE ADD COLUMN and an index (SQLite does both in place): never a table
rebuild here. No foreign key to runs, which SQLite would only add by rebuilding the table:
the upkeep's sweep deletes a staged file whose run is gone. The downgrade deletes what was
still staged, then drops the columns (batch mode; foreign keys are off during migrations,
so the rebuild cascades into no chunk).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEX = "ix_artifacts_staged_for_run_id"


def upgrade() -> None:
    op.add_column("artifacts", sa.Column("staged_for_run_id", sa.Integer(), nullable=True))
    op.add_column("artifacts", sa.Column("staged_attempt", sa.Integer(), nullable=True))
    op.create_index(INDEX, "artifacts", ["staged_for_run_id"], unique=False)


def downgrade() -> None:
    staged = "SELECT id FROM artifacts WHERE staged_for_run_id IS NOT NULL"
    op.execute(f"DELETE FROM artifact_chunks WHERE artifact_id IN ({staged})")
    op.execute("DELETE FROM artifacts WHERE staged_for_run_id IS NOT NULL")
    op.drop_index(INDEX, table_name="artifacts")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("staged_attempt")
        batch_op.drop_column("staged_for_run_id")
