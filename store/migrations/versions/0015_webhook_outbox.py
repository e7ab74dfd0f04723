"""The webhooks' outbox (issue 24): notify_events, written in the transaction that ends a
run's attempt, and webhook_deliveries, one per event and URL, that the web's sender works
through (store/notify/); and ix_runs_status_kind, which /metrics counts runs by state and
kind from (backend/ops/gauges.py).

The vocabulary columns get their CHECK in CREATE TABLE on both databases (a new table
needs no trigger pair: nothing rebuilds it). Every value is frozen here as a literal: a
migration is history.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

EVENTS = ("run.succeeded", "run.failed", "run.cancelled", "run.worker_lost", "study.finished")
STATES = ("pending", "delivered", "failed")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    op.create_table(
        "notify_events",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_events")),
        sa.UniqueConstraint("uid", name=op.f("uq_notify_events_uid")),
        sa.UniqueConstraint("key", name=op.f("uq_notify_events_key")),
        sa.CheckConstraint(_in("event", EVENTS), name=op.f("ck_notify_events_event_known")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notify_events_dispatched_id", "notify_events", ["dispatched", "id"])
    op.create_index("ix_notify_events_created_at", "notify_events", ["created_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("event_id", BIG_ID, nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["notify_events.id"],
            name=op.f("fk_webhook_deliveries_event_id_notify_events"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("event_id", "url", name="uq_webhook_deliveries_event_url"),
        sa.CheckConstraint(_in("state", STATES), name=op.f("ck_webhook_deliveries_state_known")),
    )
    op.create_index(
        "ix_webhook_deliveries_state_due", "webhook_deliveries", ["state", "next_attempt_at"]
    )
    # /metrics counts runs by (state, kind) from this index alone (an index-only scan).
    op.create_index("ix_runs_status_kind", "runs", ["status", "kind"])


def downgrade() -> None:
    op.drop_index("ix_runs_status_kind", table_name="runs")
    op.drop_index("ix_webhook_deliveries_state_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_notify_events_created_at", table_name="notify_events")
    op.drop_index("ix_notify_events_dispatched_id", table_name="notify_events")
    op.drop_table("notify_events")
