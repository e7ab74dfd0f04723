"""The scheduler's columns (store/scheduler.py): runs.priority, needs_gpu,
min_gpu_memory_mb, set_aside_for; workers.lane, gpu_memory_mb; attempts may end "preempted"

runs.priority (default 0, higher first) is kept inside -1000..1000 and
runs.min_gpu_memory_mb is NULL or positive, by the database: PostgreSQL named CHECKs,
SQLite a trigger pair each (BEFORE INSERT, BEFORE UPDATE OF the column), as 0011 does, for
the same reason (a CHECK there means rebuilding `runs`). workers.lane is guarded the same
way as the other vocabulary columns (0007). run_attempts.outcome's guard is dropped and
made again with "preempted" (a run set aside at an epoch boundary for a queued run of
higher priority).

Two indexes serve the scheduler's pick: (status, priority, queued_at) for the next run,
(launched_by, started_at) for a token's last start (fair share).

Every value is frozen here as a literal: a migration is history.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

EVENTS = ("insert", "update")
# AttemptOutcome before and after this revision.
OUTCOMES_BEFORE = ("running", "succeeded", "failed", "cancelled", "lost", "interrupted")
OUTCOMES = (*OUTCOMES_BEFORE, "preempted")
LANES = ("training", "cpu")
# (table, constraint name, the column a trigger watches, the rule)
RULES = (
    ("runs", "ck_runs_priority_range", "priority", "priority BETWEEN -1000 AND 1000"),
    (
        "runs",
        "ck_runs_gpu_memory",
        "min_gpu_memory_mb",
        "min_gpu_memory_mb IS NULL OR min_gpu_memory_mb > 0",
    ),
    ("workers", "ck_workers_lane_known", "lane", "lane IN ('training', 'cpu')"),
)
INDEXES = (
    ("ix_runs_status_priority_queued", "runs", ["status", "priority", "queued_at"]),
    ("ix_runs_launched_by_started", "runs", ["launched_by", "started_at"]),
)


def upgrade() -> None:
    op.add_column("runs", sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "runs",
        sa.Column("needs_gpu", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("runs", sa.Column("min_gpu_memory_mb", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("set_aside_for", sa.Integer(), nullable=True))
    op.add_column(
        "workers",
        sa.Column("lane", sa.String(20), nullable=False, server_default="training"),
    )
    op.add_column("workers", sa.Column("gpu_memory_mb", sa.Integer(), nullable=True))
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)
    for table, name, column, rule in RULES:
        _guard(table, name, column, rule)
    _outcome_guard(OUTCOMES_BEFORE, drop=True)
    _outcome_guard(OUTCOMES)


def downgrade() -> None:
    op.execute("UPDATE run_attempts SET outcome = 'interrupted' WHERE outcome = 'preempted'")
    _outcome_guard(OUTCOMES, drop=True)
    _outcome_guard(OUTCOMES_BEFORE)
    for table, name, _, _ in RULES:
        _unguard(table, name)
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("gpu_memory_mb")
        batch_op.drop_column("lane")
    # runs is dropped from in place (SQLite 3.35+ drops a plain column without a rebuild,
    # which would lose 0007's and 0011's triggers).
    for column in ("set_aside_for", "min_gpu_memory_mb", "needs_gpu", "priority"):
        op.execute(f"ALTER TABLE runs DROP COLUMN {column}")


def _guard(table: str, name: str, column: str, rule: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        message = f"{table}.{column} is out of range ({name})"
        for event in EVENTS:
            when = "INSERT" if event == "insert" else f"UPDATE OF {column}"
            op.execute(
                f"CREATE TRIGGER {name}_{event} BEFORE {when} ON {table} FOR EACH ROW "
                f"WHEN NOT ({_new(rule, column)}) BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    else:
        op.create_check_constraint(op.f(name), table, rule)


def _unguard(table: str, name: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}_{event}")
    else:
        op.drop_constraint(op.f(name), table, type_="check")


def _new(rule: str, column: str) -> str:
    """The rule over the row being written (SQLite triggers see it as NEW)."""
    return rule.replace(column, f"NEW.{column}")


def _outcome_guard(values: tuple[str, ...], *, drop: bool = False) -> None:
    name = "ck_run_attempts_outcome_known"
    if drop:
        _unguard("run_attempts", name)
        return
    quoted = ", ".join(f"'{value}'" for value in values)
    if op.get_bind().dialect.name == "sqlite":
        message = f"run_attempts.outcome must be one of: {', '.join(values)}"
        for event in EVENTS:
            when = "INSERT" if event == "insert" else "UPDATE OF outcome"
            op.execute(
                f"CREATE TRIGGER {name}_{event} BEFORE {when} ON run_attempts FOR EACH ROW "
                f"WHEN NOT (NEW.outcome IN ({quoted})) "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    else:
        op.create_check_constraint(op.f(name), "run_attempts", f"outcome IN ({quoted})")
