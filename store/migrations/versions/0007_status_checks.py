"""The database keeps runs.status, run_attempts.outcome and dataset_imports.state inside
their vocabulary (jobspec.status)

PostgreSQL: one named CHECK per column (ck_<table>_<column>_known, as the models declare).
SQLite cannot add a CHECK to a table without rebuilding it, and a rebuild of `runs` (copy,
drop, rename) loses nothing only while foreign keys are off (0006's docstring); it also
drops every trigger on the table. So SQLite gets the same rule as two triggers per column,
BEFORE INSERT and BEFORE UPDATE OF it, that abort the statement (an IntegrityError, like a
failed CHECK). A later migration that rebuilds one of these tables in batch mode must
create its triggers again (`create_triggers`); tests/store/test_status_checks.py upgrades to
head and checks that a bad value is still refused.

The values are frozen here as literals (jobspec.status as it was at this revision): a
migration is history and must build the same schema whatever the enums say later. A value
added to or removed from an enum is a new migration that drops and recreates these guards;
tests/store/test_status_checks.py compares the head schema's guards with the enums and
fails until that migration exists.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column, allowed values): RunStatus, AttemptOutcome and ImportState at 0007.
GUARDED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("runs", "status", ("queued", "running", "succeeded", "failed", "cancelled")),
    (
        "run_attempts",
        "outcome",
        ("running", "succeeded", "failed", "cancelled", "lost", "interrupted"),
    ),
    ("dataset_imports", "state", ("queued", "running", "done", "failed")),
)
EVENTS = ("insert", "update")


def upgrade() -> None:
    for table, column, values in GUARDED:
        if op.get_bind().dialect.name == "sqlite":
            create_triggers(table, column, values)
        else:
            op.create_check_constraint(
                op.f(f"ck_{table}_{column}_known"), table, _sql_in(column, values)
            )


def downgrade() -> None:
    for table, column, _ in GUARDED:
        if op.get_bind().dialect.name == "sqlite":
            for event in EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS {_trigger(table, column, event)}")
        else:
            op.drop_constraint(op.f(f"ck_{table}_{column}_known"), table, type_="check")


def create_triggers(table: str, column: str, values: tuple[str, ...]) -> None:
    """SQLite: abort an INSERT or UPDATE that puts a value outside `values` in `column`
    (NULL passes, as it passes a CHECK)."""
    message = f"{table}.{column} must be one of: {', '.join(values)}"
    for event in EVENTS:
        when = "INSERT" if event == "insert" else f"UPDATE OF {column}"
        op.execute(
            f"CREATE TRIGGER {_trigger(table, column, event)} BEFORE {when} ON {table} "
            f"FOR EACH ROW WHEN NOT (NEW.{_sql_in(column, values)}) "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def _sql_in(column: str, values: tuple[str, ...]) -> str:
    """`column IN ('a', 'b')`: the same text jobspec.status.sql_in gives the models."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def _trigger(table: str, column: str, event: str) -> str:
    return f"ck_{table}_{column}_known_{event}"
