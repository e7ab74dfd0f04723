"""runs.best_key / runs.best_score: a run's "best" as the runs table sorts by it, kept up to
date by the store (store/runs/best.py), with two indexes a page sorted by best walks one
group (kind, key) at a time: best first (score ascending, id descending) and worst first
(score descending, id descending). And for a page sorted by duration: an index over a
finished run's seconds from start to finish (each database's expression) and one over
(started_at, id) for the runs not finished or never started; and over the test accuracy
and balanced accuracy of the run's stored evaluation (result.evaluation.<name>; a result
the database cannot parse reads as none, so one bad row fails neither the index nor a page).

The columns are derived data: existing runs are filled from their summaries by the rule
the store keeps them with (store/runs/best.py `score_of`), a batch of runs at a time. The
kinds' ranking keys are frozen below as they were when this revision was written (a
migration is history: it imports nothing of the project); a later change of ranking is
applied by the store as runs' summaries change, or by `best.refresh`. Nullable columns are added in
place (no batch rebuild of runs on SQLite: its triggers stay).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 01:10:00
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

BATCH = 2000  # runs filled per round
# A finished run's duration in seconds, as backend/runs/duration_sort.py writes it.
SQLITE_SECONDS = "(julianday(finished_at) - julianday(started_at)) * 86400.0"
PG_SECONDS = "EXTRACT(epoch FROM finished_at - started_at)"
EVALUATION = ("accuracy", "balanced_accuracy")  # result.evaluation numbers the table sorts by
# result.evaluation.<name> as a number on PostgreSQL, NULL where the stored document cannot
# be parsed (`->` parses all of it, and refuses an older version's lone surrogate escape: a
# bare expression index would then refuse to build, and refuse every later write of that
# row). store/runs/changes.py `evaluation_number` calls it by this name.
PG_EVALUATION_FUNCTION = """
CREATE FUNCTION stacklab_evaluation_number(doc json, name text) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN ((doc -> 'evaluation') ->> name)::double precision;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$
"""
# (kind, ranking key, a tune's trial pattern?, goal) in the order a run is scored on: the
# first with a value wins (store/runs/best.py `groups()` at revision 0016).
RANKING: tuple[tuple[str, str, bool, str], ...] = (
    ("finetune", "finetune/val_accuracy", False, "max"),
    ("pretrain", "ae03/val_loss", False, "min"),
    ("pretrain", "ae02/val_loss", False, "min"),
    ("pretrain", "ae01/val_loss", False, "min"),
    ("tune", "trial-*/val_loss", True, "min"),
    ("finetune", "finetune/val_loss", False, "min"),
)


def upgrade() -> None:
    op.add_column("runs", sa.Column("best_key", sa.String(length=200), nullable=True))
    op.add_column("runs", sa.Column("best_score", sa.Float(), nullable=True))
    op.create_index(
        "ix_runs_best_first",
        "runs",
        ["kind", "best_key", "best_score", sa.text("id DESC")],
        unique=False,
    )
    op.create_index(
        "ix_runs_best_last",
        "runs",
        ["kind", "best_key", sa.text("best_score DESC"), sa.text("id DESC")],
        unique=False,
    )
    op.create_index("ix_runs_started_id", "runs", ["started_at", "id"], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"CREATE INDEX ix_runs_duration_sqlite ON runs (({SQLITE_SECONDS}), id)")
    else:
        op.execute(f"CREATE INDEX ix_runs_duration_pg ON runs (({PG_SECONDS}), id)")
    if op.get_bind().dialect.name != "sqlite":
        op.execute(PG_EVALUATION_FUNCTION)
    for name in EVALUATION:
        if op.get_bind().dialect.name == "sqlite":
            path = (
                f"CASE WHEN json_valid(result) THEN json_extract(result, '$.evaluation.{name}') END"
            )
            op.execute(f"CREATE INDEX ix_runs_eval_{name}_sqlite ON runs (({path}), id)")
        else:
            path = f"stacklab_evaluation_number(result, '{name}')"
            op.execute(f"CREATE INDEX ix_runs_eval_{name}_pg ON runs (({path}), id)")
    _fill(op.get_bind())


def _fill(bind: sa.Connection) -> None:
    """Every run's kept best, from its summaries."""
    last = 0
    while True:
        runs = bind.execute(
            sa.text("SELECT id, kind FROM runs WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": BATCH},
        ).all()
        if not runs:
            return
        last = runs[-1][0]
        values: dict[int, dict[str, tuple[float | None, float, float]]] = {i: {} for i, _ in runs}
        rows = bind.execute(
            sa.text(
                "SELECT run_id, key, kept_value, last_value, best_value FROM metric_summaries "
                "WHERE run_id > :first AND run_id <= :last"
            ),
            {"first": runs[0][0] - 1, "last": last},
        )
        for run_id, key, kept, last_value, best_value in rows:
            values[run_id][key] = (kept, last_value, best_value)
        scored = []
        for run_id, kind in runs:
            key, score = _score_of(kind, values[run_id])
            if key is not None:
                scored.append({"id": run_id, "k": key, "s": score})
        if scored:
            bind.execute(
                sa.text("UPDATE runs SET best_key = :k, best_score = :s WHERE id = :id"), scored
            )


def _score_of(
    kind: str, values: dict[str, tuple[float | None, float, float]]
) -> tuple[str | None, float | None]:
    """(ranking key, signed score: lower is better) of a run, or (None, None)."""
    for name, key, pattern, goal in RANKING:
        if name != kind:
            continue
        value: float | None
        if pattern:  # a tune: its best trial's best value
            found = [best for k, (_, _, best) in values.items() if fnmatchcase(k, key)]
            value = (min(found) if goal == "min" else max(found)) if found else None
        elif key in values:
            kept, last, _ = values[key]
            value = kept if kept is not None else last
        else:
            value = None
        if value is not None:
            return key, -value if goal == "max" else value
    return None, None


def downgrade() -> None:
    for name in EVALUATION:
        for dialect in ("sqlite", "pg"):
            op.execute(f"DROP INDEX IF EXISTS ix_runs_eval_{name}_{dialect}")
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS stacklab_evaluation_number(json, text)")
    op.execute("DROP INDEX IF EXISTS ix_runs_duration_sqlite")
    op.execute("DROP INDEX IF EXISTS ix_runs_duration_pg")
    op.drop_index("ix_runs_started_id", table_name="runs")
    op.drop_index("ix_runs_best_last", table_name="runs")
    op.drop_index("ix_runs_best_first", table_name="runs")
    # In place on both (SQLite 3.35+): a batch rebuild would drop the triggers on runs.
    op.execute("ALTER TABLE runs DROP COLUMN best_score")
    op.execute("ALTER TABLE runs DROP COLUMN best_key")
