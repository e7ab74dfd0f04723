"""Celery tasks: each takes a run id and hands it to the runner."""

from __future__ import annotations

from celery.exceptions import Reject

from worker import import_task
from worker.celery_app import app
from worker.runner import ParentNotReady, StoreNotReady, WorkerStopping, execute

RETRY = {
    # A parent still training, or a store that blinked while claiming: try again later.
    "autoretry_for": (ParentNotReady, StoreNotReady),
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "max_retries": None,
    "retry_jitter": False,
}


def _run(run_id: int) -> str:
    try:
        return execute(run_id)
    except WorkerStopping as err:  # back to the broker for another worker
        raise Reject(str(err), requeue=True) from err


@app.task(name="stacklab.pretrain", **RETRY)
def pretrain(run_id: int) -> str:
    """Layer-wise pretraining of AE01-AE03."""
    return _run(run_id)


@app.task(name="stacklab.tune", **RETRY)
def tune(run_id: int) -> str:
    """This worker's share of an Optuna study."""
    return _run(run_id)


@app.task(name="stacklab.finetune", **RETRY)
def finetune(run_id: int) -> str:
    """A classifier on a pretrained or scratch encoder (waits for its pretrain run)."""
    return _run(run_id)


@app.task(name="stacklab.import_dataset")
def import_dataset(import_id: int, *_legacy) -> str:
    """Import a queued upload (or CIFAR-10 download) as a data set, or record why not."""
    try:
        return import_task.import_dataset(import_id)
    except import_task.WorkerStopping as err:  # not started here: back to the broker
        raise Reject(str(err), requeue=True) from err
