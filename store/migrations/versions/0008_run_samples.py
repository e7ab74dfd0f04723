"""run_samples: time series (the worker's memory, CPU, GPU) apart from the epoch metrics

Runs stored before this logged their system samples as metrics of a fake stage "system"
with step = seconds since the job started, which made seconds look like epochs everywhere
(progress sentences, kept epochs, compare, the CSV's epoch column). The upgrade moves those
rows into run_samples (key without the "system/" prefix, t = the old step, attempt = the
run's current attempt: the old rows did not say which attempt wrote them) and deletes them
and their summaries from the metrics, so old runs keep their system chart and lose the
fake epochs. The downgrade puts them back as metrics (one per whole second), without
summaries.

A new table only: no table is rebuilt, nothing cascades.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OLD_STAGE = "system"  # the fake stage; fixed here, whatever later code calls it


def upgrade() -> None:
    op.create_table(
        "run_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("wall_time", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_samples_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_samples")),
        sa.UniqueConstraint(
            "run_id", "attempt", "key", "t", name="uq_run_samples_run_attempt_key_t"
        ),
    )
    prefix = f"{OLD_STAGE}/"
    op.execute(
        sa.text(
            "INSERT INTO run_samples (run_id, attempt, key, t, value, wall_time) "
            "SELECT m.run_id, CASE WHEN r.attempts > 0 THEN r.attempts ELSE 1 END, "
            "SUBSTR(m.key, :start), m.step, m.value, m.wall_time "
            "FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.key LIKE :like"
        ).bindparams(start=len(prefix) + 1, like=f"{prefix}%")
    )
    for table in ("metrics", "metric_summaries"):
        delete = sa.text(f"DELETE FROM {table} WHERE key LIKE :like")
        op.execute(delete.bindparams(like=f"{prefix}%"))


def downgrade() -> None:
    # SQLite's CAST truncates (t >= 0: the floor); PostgreSQL's rounds, so it floors first.
    second = "CAST(t AS INTEGER)"
    if op.get_bind().dialect.name == "postgresql":
        second = "CAST(FLOOR(t) AS INTEGER)"
    op.execute(
        sa.text(
            "INSERT INTO metrics (run_id, key, step, value, wall_time) "
            f"SELECT run_id, '{OLD_STAGE}/' || key, {second}, MAX(value), MAX(wall_time) "
            f"FROM run_samples GROUP BY run_id, key, {second}"
        )
    )
    op.drop_table("run_samples")
