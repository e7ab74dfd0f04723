"""The notifications' outbox: events written in the transaction that ends a run's attempt
(store/notify/outbox.py), and their deliveries, one per webhook URL, that the web's sender
works through (store/notify/sender.py). Migration 0015."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false as sql_false

from store.base import Base, JSONObject
from store.notify.vocabulary import DeliveryState, NotifyEvent
from store.vocabulary import known_values, vocabulary_column

KEY_CHARS = 100
URL_CHARS = 2048  # store.settings.MAX_WEBHOOK_URL_CHARS
ERROR_CHARS = 500


class OutboxEvent(Base):
    """Something a webhook tells, written once (its `key` is unique) where it happened."""

    __tablename__ = "notify_events"
    __table_args__ = (
        known_values("event", NotifyEvent),
        Index("ix_notify_events_dispatched_id", "dispatched", "id"),
        {"sqlite_autoincrement": True},  # ids never reused after a purge
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # Sent as X-Stacklab-Delivery: receivers drop a second copy (after a crash mid-send).
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    # What makes it the same event: "run:12:<when run 12 was created>:attempt:3",
    # "study:4:<when its last run ended>".
    key: Mapped[str] = mapped_column(String(KEY_CHARS), unique=True)
    event: Mapped[NotifyEvent] = mapped_column(vocabulary_column(NotifyEvent))
    # No foreign keys: a run or group deleted later keeps its notification history.
    run_id: Mapped[int | None] = mapped_column(Integer)
    group_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[JSONObject] = mapped_column(JSON, default=dict)  # what the body says
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # The sender made its deliveries (one per URL configured then).
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sql_false())


class WebhookDelivery(Base):
    """One event to one URL: its attempts, when the next is due, how the last went."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "url", name="uq_webhook_deliveries_event_url"),
        known_values("state", DeliveryState),
        Index("ix_webhook_deliveries_state_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("notify_events.id", ondelete="CASCADE"),
    )
    url: Mapped[str] = mapped_column(String(URL_CHARS))
    state: Mapped[DeliveryState] = mapped_column(
        vocabulary_column(DeliveryState), default=DeliveryState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # By the database's clock (store.clock); while an attempt is on its way, its lease.
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)  # the receiver's HTTP status
    last_error: Mapped[str | None] = mapped_column(String(ERROR_CHARS))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
