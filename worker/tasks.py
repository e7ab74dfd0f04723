"""Celery tasks: each takes a run id and hands it to the runner."""

from __future__ import annotations

from worker.celery_app import app
from worker.runner import ParentNotReady, execute

RETRY = {
    "autoretry_for": (ParentNotReady,),
    "retry_backoff": 2,
    "retry_backoff_max": 30,
    "max_retries": None,
    "retry_jitter": False,
}


@app.task(name="stacklab.pretrain", **RETRY)
def pretrain(run_id: int) -> str:
    """Layer-wise pretraining of AE01-AE03."""
    return execute(run_id)


@app.task(name="stacklab.tune", **RETRY)
def tune(run_id: int) -> str:
    """This worker's share of an Optuna study."""
    return execute(run_id)


@app.task(name="stacklab.finetune", **RETRY)
def finetune(run_id: int) -> str:
    """A classifier on a pretrained or scratch encoder (waits for its pretrain run)."""
    return execute(run_id)
