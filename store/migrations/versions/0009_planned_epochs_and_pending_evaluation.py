"""runs.planned_epochs (work queued per token) and runs.evaluation_queued_at /
evaluation_task_id ("evaluate now" queued at most once at a time)

planned_epochs: the epochs the run may train at most (its kind's plan summed), written at
launch so the queued total is one SELECT sum(). Rows written before this have NULL, and the
sum counts NULL as 0: they are counted from their next re-queue on (which fills it in). It
is not back-filled here: a migration never imports the job kinds that compute a plan.

evaluation_queued_at: set by the one request that queued a run's "evaluate now" (an
UPDATE ... WHERE evaluation_queued_at IS NULL), cleared when the evaluation is stored,
fails or is skipped; evaluation_task_id: that request's task.

Plain ALTER TABLE ADD COLUMN (SQLite does it in place): never a table rebuild here.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("planned_epochs", sa.Integer(), nullable=True))
    op.add_column(
        "runs", sa.Column("evaluation_queued_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("runs", sa.Column("evaluation_task_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("evaluation_task_id")
        batch_op.drop_column("evaluation_queued_at")
        batch_op.drop_column("planned_epochs")
