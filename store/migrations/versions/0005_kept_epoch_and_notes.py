"""metric_summaries.kept_value/kept_step (the epoch a run keeps) and runs.notes

"Best" in lists and compares is the value at the epoch whose model the run keeps (early
stopping's restored epoch), not the best of any epoch. Existing runs are replayed epoch by
epoch under their kind's rule.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 04:00:00
"""

from __future__ import annotations

import json
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metric_summaries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kept_value", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("kept_step", sa.Integer(), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notes", sa.Text(), nullable=True))
    _backfill_kept(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("notes")
    with op.batch_alter_table("metric_summaries", schema=None) as batch_op:
        batch_op.drop_column("kept_step")
        batch_op.drop_column("kept_value")


def _backfill_kept(bind: sa.engine.Connection) -> None:
    """Replay every run's epochs under its kind's keep rule (jobspec.kinds)."""
    from jobspec import kinds

    runs = bind.execute(
        sa.text("SELECT id, kind, params FROM runs WHERE id IN (SELECT run_id FROM metrics)")
    ).all()
    for run_id, kind, params in runs:
        if isinstance(params, str):
            params = json.loads(params)
        rule = kinds.get(kind).kept_epoch_rule(params or {}) if kind in kinds.names() else None
        rows = bind.execute(
            sa.text("SELECT key, step, value FROM metrics WHERE run_id = :r ORDER BY step, key"),
            {"r": run_id},
        ).all()
        epochs: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
        for key, step, value in rows:
            stage, _, name = key.rpartition("/")
            epochs[(stage, step)][name] = value
        kept: dict[str, tuple[float, int]] = {}
        for (stage, step), values in sorted(epochs.items(), key=lambda item: item[0][1]):
            keep = True
            if rule is not None and rule.stage == stage:
                current = kept.get(f"{stage}/{rule.monitor}")
                value = values.get(rule.monitor)
                keep = value is not None and rule.improves(value, current and current[0])
            if keep:
                kept.update({f"{stage}/{name}": (v, step) for name, v in values.items()})
        for key, (value, step) in kept.items():
            bind.execute(
                sa.text(
                    "UPDATE metric_summaries SET kept_value = :v, kept_step = :s "
                    "WHERE run_id = :r AND key = :k"
                ),
                {"v": value, "s": step, "r": run_id, "k": key},
            )
