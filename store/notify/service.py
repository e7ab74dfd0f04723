"""The webhooks' delivery log, as the ops endpoint shows it (newest first, bounded)."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from store import clock
from store.notify.models import OutboxEvent, WebhookDelivery
from store.notify.sender import redact

MAX_LOG = 200


class DeliveryRead(BaseModel):
    """One event's delivery to one URL (its path hidden: it may be the URL's secret)."""

    delivery: str  # the X-Stacklab-Delivery id receivers see
    event: str
    run_id: int | None
    group_id: int | None
    occurred_at: str
    url: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None


def _when(value: object) -> str | None:
    return None if value is None else clock.at(value).isoformat()


def log(*, session: Session, limit: int = 50) -> list[DeliveryRead]:
    """The newest deliveries (at most MAX_LOG), each with its event."""
    rows = session.execute(
        select(WebhookDelivery, OutboxEvent)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(min(max(limit, 1), MAX_LOG))
    ).all()
    return [
        DeliveryRead(
            delivery=event.uid,
            event=event.event.value,
            run_id=event.run_id,
            group_id=event.group_id,
            occurred_at=clock.at(event.created_at).isoformat(),
            url=redact(delivery.url),
            state=delivery.state.value,
            attempts=delivery.attempts,
            last_status=delivery.last_status,
            last_error=delivery.last_error,
            last_attempt_at=_when(delivery.last_attempt_at),
            next_attempt_at=None if delivery.state.is_final else _when(delivery.next_attempt_at),
            delivered_at=_when(delivery.delivered_at),
        )
        for delivery, event in rows
    ]
