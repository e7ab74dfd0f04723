"""The web's side of the queue: send tasks by name, never import the worker's code."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from backend.config import Settings, get_settings

TASKS = {"pretrain": "stacklab.pretrain", "tune": "stacklab.tune", "finetune": "stacklab.finetune"}


def configure(app: Celery, settings: Settings) -> Celery:
    """Settings shared by the client and the worker: one job at a time, acked when done."""
    if settings.embedded_broker:
        # kombu's SQLAlchemy transport polls every second by default. Set on the class:
        # passing polling_interval in broker_transport_options crashed the worker here.
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = settings.embedded_poll_seconds
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        task_routes={"stacklab.*": {"queue": settings.queue}},
        task_acks_late=True,  # a job lost with its worker is not acked
        task_ignore_result=True,  # results live in our SQL store
        worker_prefetch_multiplier=1,  # one GPU job at a time per worker
        worker_concurrency=1,
        worker_hijack_root_logger=False,
    )
    if not settings.embedded_broker:
        # Redis re-delivers an unacked job after this long: longer than any training run.
        app.conf.broker_transport_options = {"visibility_timeout": 24 * 3600}
    return app


@lru_cache
def client() -> Celery:
    """A Celery app used only to send tasks."""
    return configure(Celery("stacklab-web"), get_settings())


def enqueue(kind: str, run_id: int) -> str:
    """Queue the task for a committed run; returns the task id."""
    return client().send_task(TASKS[kind], args=[run_id]).id


def revoke(task_id: str) -> None:
    """Drop a queued task from the broker, where the broker supports it (not the embedded one)."""
    if not get_settings().embedded_broker:
        client().control.revoke(task_id)
