"""The worker's side of "evaluate now": score a cancelled or failed finetune's stored
classifier on its data set's test split and store the evaluation beside the run.

No attempt is claimed and the run's status never moves: the evaluation and its files land
in one transaction (store.runs.evaluations), or not at all. A message delivered twice finds
the evaluation already there and does nothing.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jobspec import kinds
from store.artifacts import service as artifacts_service
from store.db import session_scope
from store.runs import evaluations
from store.runs.models import Run
from store.settings import get_settings
from worker import liveness
from worker.datasets import load_from_store
from worker.runner import retrying

log = logging.getLogger(__name__)
CLASSIFIER = "classifier.keras"


class WorkerStopping(Exception):
    """This worker was told to stop: the message goes back to the queue."""


@dataclass(frozen=True)
class Job:
    """What the stored run says to score."""

    run_id: int
    dataset_id: int
    model_epoch: int | None


def evaluate_run(run_id: int) -> str:
    """Evaluate the run's classifier now; returns what happened (or why nothing did)."""
    if liveness.DRAINING.is_set():
        liveness.refuse_new_work()
        raise WorkerStopping(f"not evaluating run {run_id}: this worker is stopping")
    job = retrying(lambda: _job(run_id), what=f"reading run {run_id}")
    if isinstance(job, str):
        log.info("run %s: evaluate now skipped: %s", run_id, job)
        return job
    try:
        with tempfile.TemporaryDirectory(prefix=f"stacklab-eval{run_id}-") as tmp:
            return _evaluate(job, Path(tmp))
    except Exception as err:
        log.exception("run %s: evaluate now failed", run_id)
        message = f"{type(err).__name__}: {err}"
        retrying(lambda: _fail(run_id, message), what=f"recording run {run_id}'s evaluation error")
        return f"evaluation failed: {message}"
    finally:
        from worker.ml.training import release_memory  # Keras: the pool child only

        release_memory()


def _job(run_id: int) -> Job | str:
    with session_scope() as session:
        run = session.get(Run, run_id)
        if run is None:
            return "no such run"
        skipped = None
        if not kinds.features(run.kind).evaluation or not run.status.is_stopped:
            skipped = f"run is a {run.status} {run.kind}"
        elif (run.result or {}).get("evaluation"):
            skipped = "evaluated already"
        if skipped:  # this message ends here: "evaluate now" may be asked for again
            evaluations.release(session=session, run_id=run_id)
            return skipped
        training = (run.result or {}).get("training") or {}
        # The epoch whose weights the run kept (early stopping's restored one, else the last).
        restored = training.get("restored_best_weights", True)
        kept = training.get("best_epoch") if restored else None
        return Job(run.id, run.dataset_id, kept or training.get("epochs_run"))


def _evaluate(job: Job, tmp: Path) -> str:
    from worker.ml.evaluate import evaluate_saved  # Keras: the pool child only

    settings = get_settings()
    model_path = retrying(lambda: _fetch(job.run_id, tmp / CLASSIFIER), what="fetching the model")
    dataset = retrying(
        lambda: load_from_store(job.dataset_id, settings.cache_dir), what="loading the data set"
    )
    evaluation, files = evaluate_saved(model_path, dataset, tmp / "out")
    summary = {**evaluation.summary(), "model_epoch": job.model_epoch}

    def write() -> bool:
        with session_scope() as session:
            return evaluations.store_evaluation(
                session=session, run_id=job.run_id, evaluation=summary, files=files
            )

    stored = retrying(write, what=f"storing run {job.run_id}'s evaluation")
    log.info("run %s: evaluated now (%s)", job.run_id, "stored" if stored else "not stored")
    return "evaluated" if stored else "skipped: evaluated meanwhile or re-queued"


def _fetch(run_id: int, dest: Path) -> Path:
    with session_scope() as session:
        artifact = artifacts_service.run_artifact(session, run_id, CLASSIFIER)
        return artifacts_service.write_to(session, artifact, dest)


def _fail(run_id: int, message: str) -> None:
    with session_scope() as session:
        evaluations.store_failure(session=session, run_id=run_id, error=message)
