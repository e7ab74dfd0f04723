"""The notifications' fixed vocabularies: what happened, how a webhook's delivery stands,
and the body a receiver gets. Pure standard library (store/settings.py reads one)."""

from __future__ import annotations

from enum import StrEnum


class NotifyEvent(StrEnum):
    """What a webhook tells: a run ended, a run needs attention, a study finished."""

    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"  # its job failed, or its worker was lost with no re-try left
    RUN_CANCELLED = "run.cancelled"
    RUN_WORKER_LOST = "run.worker_lost"  # its worker went silent; re-queued for a re-try
    STUDY_FINISHED = "study.finished"  # every run of a group (an ablation study) ended

    @classmethod
    def attention(cls) -> tuple[NotifyEvent, ...]:
        """Events someone should look at."""
        return (cls.RUN_FAILED, cls.RUN_WORKER_LOST)


class DeliveryState(StrEnum):
    """Where one event's delivery to one URL stands."""

    PENDING = "pending"  # waiting for its (next) attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed: given up

    @property
    def is_final(self) -> bool:
        """Nothing more will be tried."""
        return self is not DeliveryState.PENDING


class WebhookFormat(StrEnum):
    """The body a receiver gets: stacklab's JSON, or Slack's incoming-webhook message."""

    JSON = "json"
    SLACK = "slack"
