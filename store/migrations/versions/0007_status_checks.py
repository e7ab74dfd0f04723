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

The values come from the enums, as they are when this runs: a value added later is a new
migration that drops and recreates these guards.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

from enum import StrEnum

from alembic import op

from jobspec.status import AttemptOutcome, ImportState, RunStatus, sql_in

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

GUARDED: tuple[tuple[str, str, type[StrEnum]], ...] = (
    ("runs", "status", RunStatus),
    ("run_attempts", "outcome", AttemptOutcome),
    ("dataset_imports", "state", ImportState),
)
EVENTS = ("insert", "update")


def upgrade() -> None:
    for table, column, enum in GUARDED:
        if op.get_bind().dialect.name == "sqlite":
            create_triggers(table, column, enum)
        else:
            op.create_check_constraint(
                op.f(f"ck_{table}_{column}_known"), table, sql_in(column, enum)
            )


def downgrade() -> None:
    for table, column, _ in GUARDED:
        if op.get_bind().dialect.name == "sqlite":
            for event in EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS {_trigger(table, column, event)}")
        else:
            op.drop_constraint(op.f(f"ck_{table}_{column}_known"), table, type_="check")


def create_triggers(table: str, column: str, enum: type[StrEnum]) -> None:
    """SQLite: abort an INSERT or UPDATE that puts a value outside `enum` in `column`
    (NULL passes, as it passes a CHECK)."""
    message = f"{table}.{column} must be one of: {', '.join(member.value for member in enum)}"
    for event in EVENTS:
        when = "INSERT" if event == "insert" else f"UPDATE OF {column}"
        op.execute(
            f"CREATE TRIGGER {_trigger(table, column, event)} BEFORE {when} ON {table} "
            f"FOR EACH ROW WHEN NOT (NEW.{sql_in(column, enum)}) "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def _trigger(table: str, column: str, event: str) -> str:
    return f"ck_{table}_{column}_known_{event}"
