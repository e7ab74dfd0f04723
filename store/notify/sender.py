"""The web's webhook sender: outbox events become deliveries (one per configured URL),
and due deliveries are POSTed, retried with exponential back-off, and given up after
STACKLAB_WEBHOOK_MAX_ATTEMPTS.

It runs in a thread of its own in the web process (`start`, beside the upkeep loop), so a
slow receiver delays neither a reap nor a request, and workers never send. Several web
processes may run it together: an attempt is claimed by a compare-and-set on (attempts,
next_attempt_at) that one process wins, the claim moves next_attempt_at past the send's
lease, and the POST happens outside any transaction. A process that dies mid-send leaves
the claim to expire and the delivery is tried again: a receiver may then get a copy twice,
with the same X-Stacklab-Delivery id to drop it by. Every time is the database's
(store.clock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TypedDict
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store import clock
from store.dml import execute_dml
from store.notify import body as bodies
from store.notify import outbox, transport
from store.notify.models import OutboxEvent, WebhookDelivery
from store.notify.vocabulary import DeliveryState, NotifyEvent
from store.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PER_ROUND = 100
SENDS_PER_ROUND = 20
KEEP_DAYS = 7  # events and their deliveries are forgotten a week after they happened
PURGE_PER_ROUND = 500

Post = Callable[[str, bytes, dict[str, str]], transport.Answer]
SessionScope = Callable[[], AbstractContextManager[Session]]


class SenderReport(TypedDict):
    """What one round did: events dispatched, deliveries attempted and delivered."""

    dispatched: int
    attempted: int
    delivered: int


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before the attempt after `attempts` failed ones: base x 2^(attempts-1)."""
    seconds = settings.webhook_backoff_seconds * 2.0 ** max(attempts - 1, 0)
    return min(seconds, settings.webhook_max_backoff_seconds)


def lease(settings: Settings) -> float:
    """How long a claimed attempt may take before another process may try it again."""
    return 4 * settings.webhook_timeout_seconds + 30


def dispatch(
    session: Session, urls: list[str], wanted: frozenset[NotifyEvent] = frozenset(NotifyEvent)
) -> int:
    """Make the deliveries of events not yet dispatched (one per URL, none without URLs or
    for an event not `wanted`) and derive studies' ends from run events. Returns the
    events dispatched."""
    events = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.dispatched.is_(False))
        .order_by(OutboxEvent.id)
        .limit(EVENTS_PER_ROUND)
    ).all()
    now = clock.now(session)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    for event in events:
        if event.group_id is not None and event.event is not NotifyEvent.STUDY_FINISHED:
            outbox.study_event(session, event.group_id)
        for url in urls if event.event in wanted else ():
            session.execute(
                dialect.insert(WebhookDelivery)
                .values(
                    event_id=event.id,
                    url=url,
                    state=DeliveryState.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                )
                .on_conflict_do_nothing()
            )
    if events:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_([event.id for event in events]))
            .values(dispatched=True)
            .execution_options(synchronize_session=False)
        )
    return len(events)


def due(session: Session, *, limit: int = SENDS_PER_ROUND) -> list[tuple[int, int]]:
    """(delivery id, attempts so far) of pending deliveries whose next attempt is due."""
    now = clock.now(session)
    rows = session.execute(
        select(WebhookDelivery.id, WebhookDelivery.attempts)
        .where(
            WebhookDelivery.state == DeliveryState.PENDING, WebhookDelivery.next_attempt_at <= now
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    ).all()
    return [(row.id, row.attempts) for row in rows]


def claim(session: Session, delivery_id: int, attempts: int, *, lease_s: float) -> bool:
    """Take attempt attempts+1 of a delivery (one process wins): its next_attempt_at moves
    past the lease, so nobody else tries it while it is on its way."""
    now = clock.now(session)
    return bool(
        execute_dml(
            session,
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.state == DeliveryState.PENDING,
                WebhookDelivery.attempts == attempts,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(
                attempts=attempts + 1,
                last_attempt_at=now,
                next_attempt_at=now + timedelta(seconds=lease_s),
            )
            .execution_options(synchronize_session=False),
        )
    )


def record(
    session: Session, delivery_id: int, attempt: int, answer: transport.Answer, settings: Settings
) -> DeliveryState:
    """Write how attempt `attempt` went: delivered, given up, or the next try's time."""
    now = clock.now(session)
    values: dict[str, object] = {"last_status": answer.status, "last_error": answer.error}
    state = DeliveryState.PENDING
    if answer.ok:
        state = DeliveryState.DELIVERED
        values |= {"delivered_at": now, "last_error": None}
    elif attempt >= settings.webhook_max_attempts:
        state = DeliveryState.FAILED
    else:
        values["next_attempt_at"] = now + timedelta(seconds=backoff(settings, attempt))
    execute_dml(
        session,
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.attempts == attempt,
            WebhookDelivery.state == DeliveryState.PENDING,
        )
        .values(state=state, **values)
        .execution_options(synchronize_session=False),
    )
    return state


def purge(session: Session) -> int:
    """Forget events (with their deliveries) a week old, a bounded batch at a time."""
    cutoff: datetime = clock.now(session) - timedelta(days=KEEP_DAYS)
    old = select(OutboxEvent.id).where(OutboxEvent.created_at < cutoff).limit(PURGE_PER_ROUND)
    ids = list(session.scalars(old))
    if not ids:
        return 0
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
    return execute_dml(session, delete(OutboxEvent).where(OutboxEvent.id.in_(ids)))


class Sender:
    """One process's webhook sender."""

    def __init__(
        self, *, session_scope: SessionScope, settings: Settings, post: Post | None = None
    ):
        self.session_scope, self.settings = session_scope, settings
        timeout = settings.webhook_timeout_seconds
        self.post: Post = post or (
            lambda url, data, head: transport.post(url, data, head, timeout=timeout)
        )

    def round(self) -> SenderReport:
        """Dispatch new events, send what is due, forget old rows."""
        with self.session_scope() as session:
            dispatched = dispatch(
                session, list(self.settings.webhook_urls), frozenset(self.settings.webhook_events)
            )
        attempted = delivered = 0
        with self.session_scope() as session:
            todo = due(session)
        for delivery_id, attempts in todo:
            state = self._attempt(delivery_id, attempts)
            attempted += state is not None
            delivered += state is DeliveryState.DELIVERED
        with self.session_scope() as session:
            purge(session)
        return {"dispatched": dispatched, "attempted": attempted, "delivered": delivered}

    def _attempt(self, delivery_id: int, attempts: int) -> DeliveryState | None:
        """One claimed POST and its outcome (None: another process took it)."""
        settings = self.settings
        with self.session_scope() as session:
            if not claim(session, delivery_id, attempts, lease_s=lease(settings)):
                return None
            delivery = session.get_one(WebhookDelivery, delivery_id)
            event = session.get_one(OutboxEvent, delivery.event_id)
            url, name, uid = delivery.url, event.event.value, event.uid
            data = bodies.encode(
                event.payload,
                form=settings.webhook_format,
                delivery=uid,
                occurred_at=clock.at(event.created_at).isoformat(),
                base_url=settings.webhook_base_url,
            )
        head = bodies.headers(
            event=name,
            delivery=uid,
            attempt=attempts + 1,
            body=data,
            secret=settings.webhook_secret,
        )
        answer = self.post(url, data, head)  # no transaction open while it waits
        with self.session_scope() as session:
            state = record(session, delivery_id, attempts + 1, answer, settings)
        if not answer.ok:
            log.warning(
                "webhook %s to %s failed (attempt %d): %s",
                uid,
                redact(url),
                attempts + 1,
                answer.error,
            )
        return state


def redact(url: str) -> str:
    """A URL as logs and pages show it: scheme and host only (the path of a Slack or
    similar webhook URL is its secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/…"


def start(stop: threading.Event, *, session_scope: SessionScope, settings: Settings) -> None:
    """The web's sender thread, a round every STACKLAB_HEARTBEAT_SECONDS (with no webhook
    URLs set it still marks events dispatched and forgets old ones)."""
    sender = Sender(session_scope=session_scope, settings=settings)

    def loop() -> None:
        while not stop.wait(settings.heartbeat_seconds):
            try:
                sender.round()
            except Exception as err:  # the store may be restarting; try again next round
                log.warning("webhook round failed: %s", err)

    threading.Thread(target=loop, name="webhooks", daemon=True).start()
