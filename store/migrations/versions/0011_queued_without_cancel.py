"""A queued run never has a cancel pending (runs: NOT (status = 'queued' AND cancel_requested))

Before this, a cancel landing while a stopping worker handed its run back (or while the
upkeep gave a silent run up) could leave the run queued with cancel_requested set: no
worker claims such a run, the re-send loop sent it again and again, re-queue refused it and
it counted against the queue limits, forever. The code now decides every status change in
one conditional UPDATE (store.runs.service.request_cancel, store.runs.attempts.hand_back,
store.runs.upkeep.reap_stale); this makes the state unrepresentable.

The upgrade first settles rows already stuck: each becomes cancelled (what its user asked
for; finished_at set where it has none). Then the guard:

PostgreSQL: a named CHECK, ck_runs_queued_without_cancel (as the model declares it).
SQLite: a pair of triggers, BEFORE INSERT and BEFORE UPDATE OF status, cancel_requested,
that abort the statement (an IntegrityError, like a failed CHECK): adding a CHECK there
means rebuilding `runs` in batch mode, which drops 0007's status triggers and, with foreign
keys on, cascades into every run's metrics (0006 and 0007 explain). No trigger of 0007 is
touched here. The trigger text has no `IN (...)` list: tests/store/test_status_checks.py
reads those lists as the status vocabulary.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NAME = "ck_runs_queued_without_cancel"
# RunStatus.QUEUED and RunStatus.CANCELLED at 0011, frozen (a migration is history).
QUEUED, CANCELLED = "queued", "cancelled"
EVENTS = ("insert", "update")


def upgrade() -> None:
    op.execute(
        f"UPDATE runs SET status = '{CANCELLED}', "
        "finished_at = COALESCE(finished_at, CURRENT_TIMESTAMP) "
        f"WHERE status = '{QUEUED}' AND cancel_requested"
    )
    if op.get_bind().dialect.name == "sqlite":
        message = "runs: a queued run cannot have a cancel pending (cancel it instead)"
        for event in EVENTS:
            when = "INSERT" if event == "insert" else "UPDATE OF status, cancel_requested"
            op.execute(
                f"CREATE TRIGGER {NAME}_{event} BEFORE {when} ON runs FOR EACH ROW "
                f"WHEN NEW.status = '{QUEUED}' AND NEW.cancel_requested "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    else:
        op.create_check_constraint(
            op.f(NAME), "runs", f"NOT (status = '{QUEUED}' AND cancel_requested)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS {NAME}_{event}")
    else:
        op.drop_constraint(op.f(NAME), "runs", type_="check")
