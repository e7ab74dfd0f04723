"""The web's side of the queue: send tasks by name, never import the worker's code.

Every call that talks to the broker is bounded by STACKLAB_BROKER_TIMEOUT_SECONDS and fails
with QueueUnavailable, a plain message naming the broker (never its credentials).
"""

from __future__ import annotations

import os
import sqlite3
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from celery import Celery

from jobspec import kinds

# The tasks that are not a job kind's, named once in jobspec.kind_names (no kind may take
# those names) and re-exported here for enqueue()'s callers and the worker's tasks:
# IMPORT (its id is a dataset_imports row's), EVALUATE (a cancelled or failed finetune's).
from jobspec.kind_names import EVALUATE as EVALUATE
from jobspec.kind_names import EVALUATE_TASK as EVALUATE_TASK
from jobspec.kind_names import IMPORT as IMPORT
from jobspec.kind_names import IMPORT_TASK as IMPORT_TASK
from jobspec.kind_names import OTHER_TASKS as OTHER_TASKS
from jobspec.scheduling import Lane
from store.settings import Settings, get_settings


def task_name(kind: str) -> str:
    """The Celery task a run of this kind (or IMPORT, a data set import, or EVALUATE,
    scoring a stopped finetune) is sent to."""
    return OTHER_TASKS.get(kind) or kinds.get(kind).task


def lane_of(kind: str) -> Lane:
    """The lane a task of this kind runs on: imports and "evaluate now" on the CPU lane,
    every job kind's runs on training workers."""
    return Lane.CPU if kind in OTHER_TASKS else Lane.TRAINING


def lane_queue(lane: Lane, settings: Settings | None = None) -> str:
    """The Celery queue of a lane (STACKLAB_QUEUE, STACKLAB_CPU_QUEUE)."""
    settings = settings or get_settings()
    return settings.cpu_lane_queue if lane is Lane.CPU else settings.queue


def tasks() -> dict[str, str]:
    """Every task name the worker must register, by kind."""
    return {**kinds.task_names(), **OTHER_TASKS}


class QueueUnavailable(Exception):
    """The broker could not be reached: nothing was sent."""

    def __init__(self, broker: str, reason: str = "is not answering"):
        super().__init__(f"The job queue ({broker}) {reason}; try again in a moment.")
        self.broker = broker


def configure(app: Celery, settings: Settings) -> Celery:
    """Settings shared by the client and the worker: one job at a time, acked when done."""
    if settings.embedded_broker:
        # kombu's SQLAlchemy transport polls every second by default. Set on the class:
        # passing polling_interval in broker_transport_options crashed the worker here.
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = settings.embedded_poll_seconds
    timeout = settings.broker_timeout_seconds
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=timeout,
        # A down broker fails a send in about `timeout` (one quick retry for a blip),
        # instead of Celery's default of retrying a dead connection.
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        task_default_queue=settings.queue,
        # Each lane its queue (a training worker never holds an import's message).
        task_routes={
            **{task: {"queue": settings.cpu_lane_queue} for task in OTHER_TASKS.values()},
            "stacklab.*": {"queue": settings.queue},
        },
        task_acks_late=True,  # a job lost with its worker is not acked
        task_ignore_result=True,  # results live in our SQL store
        worker_prefetch_multiplier=1,  # one GPU job at a time per worker
        worker_concurrency=1,
        worker_hijack_root_logger=False,
        # The pool child imports TensorFlow at start (the main process never does): on a
        # busy machine that outlasts Celery's 4 s wait for the child, which then kills it
        # and starts another, forever.
        worker_proc_alive_timeout=120,
        # Safety nets against a child that grows: Celery replaces it after the job it is
        # running (Celery takes KiB; None = never).
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024 or None,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child or None,
    )
    if not settings.embedded_broker:
        app.conf.broker_transport_options = {
            # Redis re-delivers an unacked job after this long: longer than any training run.
            "visibility_timeout": 24 * 3600,
            # A broker that is gone or hung answers within this, not never.
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        }
    return app


@lru_cache
def client() -> Celery:
    """A Celery app used only to send tasks."""
    return configure(Celery("stacklab-web"), get_settings())


def broker_name(settings: Settings | None = None) -> str:
    """The broker in words, without user or password: 'Redis at host:6379'."""
    settings = settings or get_settings()
    if settings.embedded_broker:
        return "the embedded queue file"
    parts = urlsplit(settings.celery_broker_url)
    kind = {"redis": "Redis", "rediss": "Redis", "amqp": "RabbitMQ", "amqps": "RabbitMQ"}
    where = f"{parts.hostname or 'localhost'}:{parts.port}" if parts.port else parts.hostname
    return f"{kind.get(parts.scheme, parts.scheme)} at {where or 'localhost'}"


def _broker_errors() -> tuple[type[BaseException], ...]:
    """What a send raises when the broker is away (the embedded one raises SQLAlchemy's)."""
    from kombu.exceptions import KombuError
    from sqlalchemy.exc import SQLAlchemyError

    errors: tuple[type[BaseException], ...] = (OSError, KombuError, SQLAlchemyError)
    try:
        from redis.exceptions import RedisError
    except ImportError:  # not installed: no Redis broker either
        return errors
    return (*errors, RedisError)


def enqueue(kind: str, run_id: int) -> str:
    """Wake a worker of the kind's lane for a committed run (or import); returns the task
    id, or QueueUnavailable. For runs the message decides nothing: the woken worker
    claims whatever store/scheduler.py says is next (the id is a hint, for the logs)."""
    name = task_name(kind)
    try:
        queue = lane_queue(lane_of(kind))
        task_id: str = client().send_task(name, args=[run_id], queue=queue).id
        return task_id
    except _broker_errors() as err:
        raise QueueUnavailable(broker_name()) from err


def waiting(lane: Lane) -> int | None:
    """Messages waiting in the broker for a lane's workers (sent, not yet taken), or None
    when the broker cannot say (it is away). Redis and the embedded queue both count them
    (kombu's virtual transports answer a declare with the queue's size)."""
    errors: tuple[type[BaseException], ...] = (*_broker_errors(), sqlite3.Error)
    try:
        with client().connection_for_write() as conn:
            declared = conn.default_channel.queue_declare(
                queue=lane_queue(lane), durable=True, auto_delete=False
            )
            return int(declared.message_count)
    except errors:
        return None


def revoke(task_id: str) -> None:
    """Drop a queued task from the broker, where the broker supports it (not the embedded one)."""
    if get_settings().embedded_broker:
        return
    try:
        client().control.revoke(task_id)
    except _broker_errors() as err:
        raise QueueUnavailable(broker_name()) from err


def check() -> None:
    """Raise QueueUnavailable unless the broker takes a connection within the broker timeout."""
    settings = get_settings()
    errors: tuple[type[BaseException], ...] = (*_broker_errors(), sqlite3.Error)
    try:
        if settings.embedded_broker:
            _check_embedded(settings)
            return
        with client().connection_for_write() as conn:
            # Opening a Redis channel pings the server; bounded by the socket timeouts.
            conn.ensure_connection(
                max_retries=1,
                interval_start=0,
                interval_step=0.2,
                interval_max=0.2,
                timeout=settings.broker_timeout_seconds,
            )
            conn.default_channel  # noqa: B018 - the channel is what proves the broker answers
    except QueueUnavailable:
        raise
    except errors as err:
        raise QueueUnavailable(broker_name(settings)) from err


def _check_embedded(settings: Settings) -> None:
    """The queue file's folder is writable and the file opens."""
    path = Path(settings.celery_broker_url.removeprefix("sqla+sqlite:///"))
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise QueueUnavailable(broker_name(settings), "cannot be written")
    conn = sqlite3.connect(path, timeout=settings.broker_timeout_seconds)
    try:
        conn.execute("SELECT 1").fetchone()
    finally:
        conn.close()


def declare() -> None:
    """Create the job queue in the broker before workers start: kombu's embedded transport
    crashes a worker that creates the same queue at the same moment as another."""
    with client().connection_for_write() as conn:
        for lane in Lane:
            conn.default_channel.queue_declare(
                queue=lane_queue(lane), durable=True, auto_delete=False
            )
