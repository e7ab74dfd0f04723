"""The runs table's change counter (store/runs/changes.py) and indexes for a page of runs.

- runs_version(id, version): one row, bumped by the database on every INSERT, UPDATE and
  DELETE of runs, so the pages' poll validator (backend/conditional.py `runs_state`) reads
  one row instead of aggregating over every run. PostgreSQL: a deferred constraint trigger
  (per row, bumping once per transaction, at its commit: the row is locked only while a
  transaction commits, after its other locks, so no writer waits on it mid-transaction);
  TRUNCATE bumps it too. SQLite: AFTER INSERT/UPDATE/DELETE triggers (a batch-mode rebuild
  of runs drops them: a later migration that rebuilds runs creates them again, and
  ix_runs_name_lower too: SQLAlchemy does not reflect an expression index on SQLite, so
  the rebuild leaves it out without a word, and the models check does not see it either).
- INDEXES below: what a page of the runs table walks where 0013 left a scan: built-in
  columns that are never null, each with id (the sort's last key); on PostgreSQL trigram
  indexes (pg_trgm) for `name ~`, `notes ~` and tag clauses.

Every value is frozen here as a literal: a migration is history.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 00:30:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

EVENTS = ("insert", "update", "delete")
BUMP = "UPDATE runs_version SET version = version + 1 WHERE id = 1"
PG_FUNCTION = f"""
CREATE FUNCTION runs_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per transaction: a flag local to it names the transaction that bumped.
    IF current_setting('stacklab.runs_version_bumped', true) IS DISTINCT FROM
            txid_current()::text THEN
        {BUMP};
        PERFORM set_config('stacklab.runs_version_bumped', txid_current()::text, true);
    END IF;
    RETURN NULL;
END
$$
"""
# A page sorted by a built-in column walks (column, id); name sorts by lower(name)
# (backend/runs/views.py `_builtin`: the expression must be the same); a column that may
# be null walks its runs with a value, then those without (`IS NULL`) by id.
INDEXES: tuple[tuple[str, str, list[str | sa.TextClause]], ...] = (
    ("ix_runs_name_lower", "runs", [sa.text("lower(name)"), "id"]),
    ("ix_runs_status_id", "runs", ["status", "id"]),
    ("ix_runs_kind_id", "runs", ["kind", "id"]),
    ("ix_runs_priority_id", "runs", ["priority", "id"]),
    # nullable: the runs with a value by (column, id), then those without by id
    ("ix_runs_finished_id", "runs", ["finished_at", "id"]),
    ("ix_runs_launched_by_id", "runs", ["launched_by", "id"]),
    ("ix_runs_parent_run_id_id", "runs", ["parent_run_id", "id"]),
    ("ix_runs_group_id_id", "runs", ["group_id", "id"]),
)
# PostgreSQL: `~` (contains) on name and notes and `tag` clauses (store/runs/search.py) read
# trigram indexes (pg_trgm, a trusted extension: a database owner may create it) instead of
# every run. Where the extension cannot be created they are left out: the filters still
# work, by a scan, as they do on SQLite.
TRIGRAM_INDEXES = (
    ("ix_runs_name_trgm", "lower(name)"),
    ("ix_runs_notes_trgm", "lower(notes)"),
    ("ix_runs_tags_trgm", "CAST(tags AS VARCHAR)"),
)


def upgrade() -> None:
    op.create_table(
        "runs_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs_version")),
    )
    op.execute("INSERT INTO runs_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "sqlite":
        for statement in sqlite_triggers():
            op.execute(statement)
    else:
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE CONSTRAINT TRIGGER runs_version_bump AFTER INSERT OR UPDATE OR DELETE "
            "ON runs DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION runs_version_bump()"
        )
        op.execute(
            "CREATE TRIGGER runs_version_truncate AFTER TRUNCATE ON runs "
            "FOR EACH STATEMENT EXECUTE FUNCTION runs_version_bump()"
        )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)
    if op.get_bind().dialect.name == "postgresql" and _trigrams():
        for name, expression in TRIGRAM_INDEXES:
            op.execute(f"CREATE INDEX {name} ON runs USING gin (({expression}) gin_trgm_ops)")


def _trigrams() -> bool:
    """Whether pg_trgm is there or could be created (in a savepoint: a refusal leaves the
    migration's transaction usable)."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as err:
        logging.getLogger(__name__).warning("no pg_trgm (%s): text filters on runs scan", err.orig)
        return False
    return True


def sqlite_triggers() -> list[str]:
    """SQLite's triggers (again after a batch-mode rebuild of runs drops them)."""
    return [
        f"CREATE TRIGGER IF NOT EXISTS runs_version_{event} AFTER {event.upper()} ON runs "
        f"BEGIN {BUMP}; END"
        for event in EVENTS
    ]


def downgrade() -> None:
    for name, _ in TRIGRAM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")  # the extension stays: others may use it
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
    if op.get_bind().dialect.name == "sqlite":
        for event in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS runs_version_{event}")
    else:
        op.execute("DROP TRIGGER IF EXISTS runs_version_truncate ON runs")
        op.execute("DROP TRIGGER IF EXISTS runs_version_bump ON runs")
        op.execute("DROP FUNCTION IF EXISTS runs_version_bump()")
    op.drop_table("runs_version")
