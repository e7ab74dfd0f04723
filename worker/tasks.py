"""Celery tasks: one per registered job kind (named by the registry; its message, with a
run id, only wakes the worker: the runner claims what the scheduler says is next), the
data set import, and "evaluate now" of a stopped finetune."""

from __future__ import annotations

from typing import Any

from celery.exceptions import Reject

from jobspec import kinds
from store import queue
from worker import evaluate_task, import_task
from worker.celery_app import app
from worker.runner import StoreNotReady, WorkerStopping, execute

RETRY = {
    # A store that blinked while claiming: try again later.
    "autoretry_for": (StoreNotReady,),
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "max_retries": None,
    "retry_jitter": False,
}


def _run(run_id: int) -> str:
    try:
        return execute(run_id)  # run_id: the run the message was sent for, a hint
    except WorkerStopping as err:  # back to the broker for another worker
        raise Reject(str(err), requeue=True) from err


def _register(kind: kinds.JobKind[Any]) -> Any:  # a Celery task (Celery is untyped)
    def run(run_id: int) -> str:
        return _run(run_id)

    run.__name__ = run.__qualname__ = kind.name
    run.__doc__ = kind.help
    return app.task(name=kind.task, **RETRY)(run)


# Every job kind in the registry, under the task name the queue contract sends it to.
RUN_TASKS = {name: _register(kinds.get(name)) for name in kinds.names()}


@app.task(name=queue.IMPORT_TASK)
def import_dataset(import_id: int, *_legacy: object) -> str:
    """Import a queued upload (or CIFAR-10 download) as a data set, or record why not."""
    try:
        return import_task.import_dataset(import_id)
    except import_task.WorkerStopping as err:  # not started here: back to the broker
        raise Reject(str(err), requeue=True) from err


@app.task(name=queue.EVALUATE_TASK)
def evaluate_run(run_id: int) -> str:
    """Score a cancelled or failed finetune's stored classifier on the test split, now."""
    try:
        return evaluate_task.evaluate_run(run_id)
    except evaluate_task.WorkerStopping as err:  # not started here: back to the broker
        raise Reject(str(err), requeue=True) from err
