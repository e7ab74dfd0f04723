"""runs.launched_by: the name of the token that launched a run (per-token queue limits)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("launched_by", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_runs_launched_by_status", ["launched_by", "status"])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_launched_by_status")
        batch_op.drop_column("launched_by")
