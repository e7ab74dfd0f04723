"""The runs table at scale: run_params (every run's parameters as indexed rows) and the
indexes that let a page of runs, sorted or filtered by any parameter or metric, cost one
page (backend/runs/views.py, store/runs/search.py).

- run_params(run_id, key, num_value, text_value): one row per flattened parameter
  ("augmentation.zoom_range"), indexed on (key, num_value, run_id) and (key, text_value,
  run_id); filled here from every stored run's params (store/runs/values.py's rules,
  frozen below: a migration is history).
- metric_summaries gains an index on (key, coalesce(kept_value, last_value), run_id): the
  kept value a `metric.<key>` column shows and sorts by.
- runs gains (archived, created_at, id) and (created_at, id): the table's default order,
  walked a page at a time.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TEXT_CHARS = 200
KEY_CHARS = 200
MAX_PARAMS = 1000
BATCH = 500  # runs read (and their rows written) at a time

INDEXES = (
    ("ix_run_params_key_num", "run_params", ["key", "num_value", "run_id"]),
    ("ix_run_params_key_text", "run_params", ["key", "text_value", "run_id"]),
    ("ix_runs_archived_created", "runs", ["archived", "created_at", "id"]),
    ("ix_runs_created", "runs", ["created_at", "id"]),
)


def upgrade() -> None:
    op.create_table(
        "run_params",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("runs.id", name=op.f("fk_run_params_run_id_runs"), ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("num_value", sa.Float(), nullable=True),
        sa.Column("text_value", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_run_params")),
    )
    _backfill()
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)
    op.create_index(
        "ix_metric_summaries_key_value",
        "metric_summaries",
        ["key", sa.text("coalesce(kept_value, last_value)"), "run_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_metric_summaries_key_value", table_name="metric_summaries")
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table("run_params")


def _backfill() -> None:
    """Every stored run's parameters as rows, a batch of runs at a time."""
    conn = op.get_bind()
    runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("params", sa.JSON))
    params = sa.table(
        "run_params",
        sa.column("run_id", sa.Integer),
        sa.column("key", sa.String),
        sa.column("num_value", sa.Float),
        sa.column("text_value", sa.String),
    )
    last = 0
    while True:
        batch = conn.execute(
            sa.select(runs.c.id, runs.c.params)
            .where(runs.c.id > last)
            .order_by(runs.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        rows = [row for run_id, values in batch for row in _rows(run_id, values)]
        if rows:
            conn.execute(sa.insert(params), rows)
        last = batch[-1][0]


def _rows(run_id: int, params: Any) -> list[dict[str, Any]]:
    if isinstance(params, str):  # a JSON column read through a plain table() may be text
        params = json.loads(params)
    rows: list[dict[str, Any]] = []
    for key, value in _flatten(params if isinstance(params, dict) else {}):
        kept = _cell(value)
        if kept is None or len(key) > KEY_CHARS:
            continue
        rows.append({"run_id": run_id, "key": key, "num_value": kept[0], "text_value": kept[1]})
        if len(rows) >= MAX_PARAMS:
            break
    return rows


def _flatten(params: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{path}.")
        else:
            yield path, value


def _cell(value: Any) -> tuple[float | None, str | None] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return (1.0 if value else 0.0), ("true" if value else "false")
    if isinstance(value, int | float):
        number = float(value)
        return None if math.isnan(number) or math.isinf(number) else (number, None)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return None, text[:TEXT_CHARS]
