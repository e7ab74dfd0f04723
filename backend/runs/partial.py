"""Runs stopped mid-training (cancelled or failed): what they kept, the warning their
weights carry, and scoring a partial finetune on the test set on demand ("evaluate now").

A partial run is never re-labelled in the store: its status stays cancelled or failed. It
is "partial" on the pages when it logged at least one epoch before it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from backend.runs import detail
from jobspec import kinds
from jobspec.metrics import split_key
from store import clock, queue
from store.artifacts import service as artifacts_service
from store.errors import InvalidRequest, NotFound
from store.runs import evaluations
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.models import Run
from store.settings import get_settings
from store.timeutil import aware

CLASSIFIER = "classifier.keras"  # what "evaluate now" loads (worker/evaluate_task.py)
# Files holding a stage's weights, by the stage they come from.
WEIGHTS_SUFFIXES = (".weights.h5", ".keras")


def last_epochs(summaries: Mapping[str, metrics_service.SummaryView]) -> dict[str, int]:
    """Stage -> the last epoch it logged, from the metric summaries."""
    out: dict[str, int] = {}
    for key, summary in summaries.items():
        stage, _ = split_key(key)
        if stage and summary.get("last_step"):
            out[stage] = max(out.get(stage, 0), int(summary["last_step"]))
    return out


def partial_of(run: Run, epochs: dict[str, int]) -> dict | None:
    """Where a cancelled or failed run stopped and which epoch its weights come from; None
    for a run that finished, or that stopped before any epoch ended (nothing kept)."""
    # Only the kind's epoch stages say where training stopped (never a sampled series).
    epochs = {
        stage: epoch
        for stage, epoch in epochs.items()
        if metrics_service.is_epoch_stage(run.kind, run.params, stage)
    }
    if not run.status.is_stopped or not epochs:
        return None
    job = kinds.find(run.kind)
    plan = job.stage_plan(run.params) if job else {}
    order = [s for s in plan if s in epochs] + sorted(
        (s for s in epochs if s not in plan), key=_trial_order
    )
    stage = order[-1]
    epoch = epochs[stage]
    # The kind's plan for it (one trial of a plan in trials: its share), else what it ran.
    planned = (job.epochs_of(run.params, stage) if job else None) or epoch
    done = order[:-1]
    training = (run.result or {}).get("training") or {}
    evaluated = job is not None and job.evaluated_stage(run.params) == stage
    weights_epoch = detail.kept_epoch(training) if evaluated and training else epoch
    text = f"{run.status} in {stage} at epoch {epoch} of {planned}"
    if done:
        trials = all(s.startswith(f"{kinds.TRIAL_STAGE}-") for s in done)
        text += f" ({len(done)} trials before it)" if trials else f" ({', '.join(done)} complete)"
    return {
        "status": run.status,
        "stage": stage,
        "file_prefix": job.file_prefix(stage) if job else stage,
        "epoch": epoch,
        "epochs_planned": planned,
        "weights_epoch": weights_epoch,
        "complete_stages": done,
        "text": text,
        "weights_note": f"partial model from epoch {weights_epoch} of {planned} "
        f"({stage} training was {run.status})",
    }


def _trial_order(stage: str) -> tuple:
    """trial-2 before trial-10."""
    name, _, number = stage.rpartition("-")
    return (name, int(number)) if number.isdigit() else (stage, -1)


def download_notes(partial: dict | None, names: list[str]) -> dict[str, str]:
    """File name -> the warning its download carries (weights of the stage cut short)."""
    if not partial:
        return {}
    prefix = partial["file_prefix"]  # the kind's name for the stage's files
    return {
        name: partial["weights_note"]
        for name in names
        if name.startswith(prefix) and name.endswith(WEIGHTS_SUFFIXES)
    }


def state(session: Session, run: Run) -> dict:
    """A run's partial view: where it stopped, each weights file's warning, the evaluation
    it has (if any) and whether "evaluate now" applies."""
    partial = partial_of(run, last_epochs(metrics_service.summaries(session, run.id)))
    names = [a.name for a in artifacts_service.list_run_artifacts(session, run.id)]
    notes = download_notes(partial, names)
    if partial:  # a failed run stores no weights (a re-try resumes from its checkpoint)
        partial["has_weights"] = bool(notes)
    evaluation = (run.result or {}).get("evaluation") or None
    evaluating = None if evaluation else pending_evaluation(session, run)
    return {
        "partial": partial,
        "download_notes": notes,
        "evaluation": evaluation,
        "evaluation_error": (run.result or {}).get("evaluation_error"),
        "evaluating": evaluating,  # queued and not ended yet: the button waits for it
        "can_evaluate": bool(
            partial
            and kinds.features(run.kind).evaluation
            and not evaluation
            and not evaluating
            and CLASSIFIER in names
        ),
    }


def pending_evaluation(session: Session, run: Run) -> dict | None:
    """The run's "evaluate now" queued and not ended (nor yet taken for lost, by the
    database's clock, which stamped it), or None."""
    queued_at = aware(run.evaluation_queued_at)
    if queued_at is None:
        return None
    lost_after = get_settings().evaluation_lost_after_seconds
    if (clock.now(session) - queued_at).total_seconds() >= lost_after:
        return None
    return {"queued_at": queued_at.isoformat(), "task_id": run.evaluation_task_id}


def _has(session: Session, run_id: int, name: str) -> bool:
    try:
        artifacts_service.run_artifact(session, run_id, name)
    except NotFound:
        return False
    return True


def request_evaluation(*, session: Session, run_id: int) -> dict:
    """Queue "evaluate now" for a cancelled or failed finetune that stored its classifier
    (NotFound, or InvalidRequest naming why not); an evaluated run is answered as it is,
    and while one is queued a request is answered with it ("already_queued") and queues
    nothing: at most one evaluation per run at a time (store.runs.evaluations)."""
    run = runs_service.get_run(session, run_id)
    if not kinds.features(run.kind).evaluation:
        scored = " or ".join(kinds.having(lambda f: f.evaluation))
        raise InvalidRequest("kind", f"run {run_id} is a {run.kind}: only a {scored} is scored")
    if not run.status.is_stopped:
        raise InvalidRequest(
            "status",
            f"run {run_id} is {run.status}: evaluate now is for a cancelled or failed finetune "
            "(a finished one was evaluated when it ended)",
        )
    evaluation = (run.result or {}).get("evaluation")
    if evaluation:
        return {"run_id": run_id, "queued": False, "evaluation": evaluation}
    if not _has(session, run_id, CLASSIFIER):
        raise InvalidRequest(
            "classifier", f"run {run_id} stored no classifier (it stopped before saving one)"
        )
    lost_after = get_settings().evaluation_lost_after_seconds
    if evaluations.claim(session=session, run_id=run_id, lost_after=lost_after) is None:
        session.refresh(run)  # the request that holds the mark: answered with its task
        pending = pending_evaluation(session, run) or {"queued_at": None, "task_id": None}
        return {"run_id": run_id, "queued": True, "already_queued": True, **pending}
    session.commit()  # the mark first: a request a moment later finds it
    try:
        task_id = queue.enqueue(queue.EVALUATE, run_id)
    except queue.QueueUnavailable:
        evaluations.release(session=session, run_id=run_id)  # nothing queued: not stuck
        session.commit()
        raise
    evaluations.note_task(session=session, run_id=run_id, task_id=task_id)
    session.commit()
    return {"run_id": run_id, "queued": True, "already_queued": False, "task_id": task_id}


def page_state(session: Session, run: Run) -> dict:
    """What the run page adds: the partial badge's text, each weights file's warning, the
    evaluate-now button (and the same as JSON for its script)."""
    found = state(session, run)
    return {
        "partial": found["partial"],
        "download_notes": found["download_notes"],
        "partial_state": found | {"id": run.id},
    }
