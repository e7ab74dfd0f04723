"""A run's life as users drive it: created queued, sent, cancelled, re-queued.

What workers write for a run (claim, progress, metrics, finish) goes through
`store.runs.attempts`, where every write is fenced by the attempt that makes it.
"""

from __future__ import annotations

import json
from typing import Any, TypeVarTuple

from sqlalchemy import (
    Select,
    String,
    bindparam,
    case,
    cast,
    delete,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from jobspec import kinds
from jobspec.kinds import Features
from jobspec.status import RunStatus
from store import clock
from store.artifacts.models import Artifact, ArtifactChunk
from store.datasets.models import DatasetRecord
from store.dml import execute_dml
from store.errors import InvalidRequest, NotFound
from store.notify import outbox
from store.runs import search, values
from store.runs.models import (
    Metric,
    MetricSummary,
    Run,
    RunAttempt,
    RunGroup,
    RunParam,
    RunSample,
    TuneTrial,
)
from store.runs.schemas import RunFilter
from store.workers.models import WorkerRecord

Columns = TypeVarTuple("Columns")  # what a filtered select() returns, kept


def create_run(*, session: Session, **fields: Any) -> Run:
    """A new queued run (committed by the caller before it is enqueued)."""
    max_attempts = (fields.get("params") or {}).get("runtime", {}).get("max_attempts", 2)
    run = Run(
        status=RunStatus.QUEUED,
        queued_at=clock.now(session),  # the re-send's grace is measured on the DB's clock
        max_attempts=max_attempts,
        retries_left=max_attempts - 1,
        **fields,
    )
    session.add(run)
    session.flush()
    values.keep_params(session, run.id, run.params)  # the table's param.<name> columns
    return run


def get_run(session: Session, run_id: int) -> Run:
    """A run by id, or NotFound."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound("run", run_id)
    return run


def mark_sent(*, session: Session, run_id: int, task_id: str) -> None:
    """The run's task message went out now (the reconciler re-sends what never arrives)."""
    run = get_run(session, run_id)
    run.task_id, run.sent_at = task_id, clock.now(session)
    session.flush()


def request_cancel(*, session: Session, run_id: int) -> Run:
    """A queued run is cancelled at once; a running one stops at its next batch.

    Under the run's row lock, as one conditional UPDATE: a claim, hand-back, give-up or
    re-queue in flight lands first and the cancel applies to what it left, so a queued run
    never keeps a pending cancel and a status never moves back."""
    lock_run(session, run_id)
    queued = Run.status == RunStatus.QUEUED
    touched = execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id, Run.status.in_(RunStatus.active()))
        .values(
            cancel_requested=True,
            status=case((queued, RunStatus.CANCELLED.value), else_=Run.status),
            finished_at=case((queued, clock.now(session)), else_=Run.finished_at),
        )
        .execution_options(synchronize_session=False),
    )
    run = _reread(session, run_id)
    if not touched:
        raise InvalidRequest("status", f"run {run_id} is {run.status} already")
    if run.status == RunStatus.CANCELLED and run.group_id is not None:
        # cancelled while queued: no attempt ends, so the study's end is told from here
        outbox.study_event(session, run.group_id)
    return run


def check_requeue(run: Run) -> None:
    """InvalidRequest unless the run has stopped (failed or cancelled) and may re-queue."""
    if run.status.is_stopped:
        return
    state = str(run.status)
    if run.status == RunStatus.RUNNING and run.cancel_requested:
        state = "running (cancelled, stopping at its next batch: re-queue it once stopped)"
    raise InvalidRequest("status", f"only failed or cancelled runs re-queue; this is {state}")


def requeue(
    *, session: Session, run_id: int, fresh: bool = False, priority: int | None = None
) -> Run:
    """A failed or cancelled run back to queued, under its row lock as one conditional
    UPDATE (a change in flight lands first; the re-queue applies to what it left). Nothing
    is deleted here: the next attempt resumes from the run's checkpoint, or (fresh, or no
    checkpoint) clears the old metrics and files itself once a worker has claimed it."""
    lock_run(session, run_id)
    touched = execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id, Run.status.in_(RunStatus.stopped()))
        .values(
            status=RunStatus.QUEUED.value,
            cancel_requested=False,
            fresh_start=fresh,
            queued_at=clock.now(session),
            sent_at=None,
            finished_at=None,
            heartbeat_at=None,
            error=None,
            traceback=None,
            retries_left=case((Run.max_attempts > 1, Run.max_attempts - 1), else_=0),
            priority=Run.priority if priority is None else priority,
        )
        .execution_options(synchronize_session=False),
    )
    run = _reread(session, run_id)
    if not touched:
        check_requeue(run)
    return run


class NotQueued(InvalidRequest):
    """A change only a queued run takes (its priority), asked of a run that is not queued:
    the web answers 409."""


def set_priority(*, session: Session, run_id: int, priority: int) -> Run:
    """A queued run's priority, as one conditional UPDATE under its row lock (a claim in
    flight lands first: a run that started keeps the priority it started with)."""
    lock_run(session, run_id)
    touched = execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(priority=priority)
        .execution_options(synchronize_session=False),
    )
    run = _reread(session, run_id)
    if not touched:
        raise NotQueued(
            "priority",
            f"run {run_id} is {run.status}: a priority changes only while the run is queued "
            "(re-queue a stopped run with a priority instead)",
        )
    return run


def _reread(session: Session, run_id: int) -> Run:
    """The run as the database has it now (after a core UPDATE), or NotFound."""
    run = session.get(Run, run_id, populate_existing=True)
    if run is None:
        raise NotFound("run", run_id)
    return run


def lock_run(session: Session, run_id: int) -> None:
    """Take the run's row until the transaction ends, waiting for a change in flight to
    land (a no-op UPDATE: PostgreSQL locks the row, SQLite takes its one write lock, which
    a SELECT ... FOR UPDATE would not); NotFound when there is no such run."""
    touched = execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id)
        .values(status=Run.status)
        .execution_options(synchronize_session=False),
    )
    if not touched:
        raise NotFound("run", run_id)


def list_attempts(session: Session, run_id: int) -> list[RunAttempt]:
    """A run's attempts, first to last."""
    return list(
        session.scalars(
            select(RunAttempt).where(RunAttempt.run_id == run_id).order_by(RunAttempt.number)
        )
    )


def roots(features: Features) -> bool:
    """Whether a kind's runs can be parents (they root an experiment)."""
    return features.experiment_root


def parent_choices(*, session: Session, selected: int | None) -> list[Run]:
    """Pretrain runs whose weights can be used now or soon (plus the preselected one)."""
    query = (
        select(Run)
        .where(Run.kind.in_(kinds.having(roots)))
        .where(Run.status.in_((RunStatus.SUCCEEDED, RunStatus.RUNNING)))
        .order_by(Run.id.desc())
        .limit(200)
    )
    runs = list(session.scalars(query))
    if selected is not None and all(run.id != selected for run in runs):
        extra = session.get(Run, selected)
        if extra is not None and kinds.features(extra.kind).experiment_root:
            runs.insert(0, extra)
    return runs


def filtered(query: Select[*Columns], run_filter: RunFilter) -> Select[*Columns]:
    """`query` (over Run) narrowed to the runs `run_filter` asks for."""
    f = run_filter
    if f.kind:
        query = query.where(Run.kind == f.kind)
    if f.status:
        query = query.where(Run.status == f.status)
    if f.group_id is not None:
        query = query.where(Run.group_id == f.group_id)
    if f.dataset:
        named = select(DatasetRecord.id).where(DatasetRecord.name == f.dataset)
        query = query.where(Run.dataset_id.in_(named))
    if f.q:
        query = query.where(func.lower(Run.name).contains(f.q.lower(), autoescape=True))
    if f.tag:
        # Tags are a JSON list; its text holds each tag JSON-quoted on every backend.
        query = query.where(cast(Run.tags, String).contains(json.dumps(f.tag), autoescape=True))
    if f.archived != "include":
        query = query.where(Run.archived.is_(f.archived == "only"))
    if f.filter:
        query = query.where(*search.where(search.parse(f.filter)))
    return query


def set_archived(*, session: Session, run_id: int, archived: bool) -> Run:
    """Hide a finished run from the runs list (or show it again); live runs stay in view."""
    run = get_run(session, run_id)
    if archived and not run.status.is_finished:
        raise InvalidRequest(
            "status", f"run {run_id} is {run.status}: archive it once it has finished"
        )
    run.archived = archived
    session.flush()
    return run


def deletion_refusals(session: Session, run_ids: list[int]) -> dict[int, str]:
    """Why some of run_ids cannot be deleted (the others can): missing, still queued or
    running, or a pretrain whose weights runs use that are not deleted with it."""
    ids = set(run_ids)
    status = dict(session.execute(select(Run.id, Run.status).where(Run.id.in_(ids))).all())
    refused = {}
    for run_id in ids:
        if run_id not in status:
            refused[run_id] = f"run {run_id} does not exist"
        elif not status[run_id].is_finished:
            refused[run_id] = (
                f"run {run_id} is {status[run_id]}: cancel it and let it stop before deleting it"
            )
    users: dict[int, list[int]] = {}
    for child, parent in session.execute(
        select(Run.id, Run.parent_run_id).where(Run.parent_run_id.in_(ids)).order_by(Run.id)
    ):
        if parent is not None:  # always: selected by parent_run_id
            users.setdefault(parent, []).append(child)
    changed = True
    while changed:  # a kept child keeps its parent, which may keep its own parent
        changed = False
        for parent, children in users.items():
            kept = [c for c in children if c not in ids or c in refused]
            if kept and parent not in refused:
                named = ", ".join(f"#{c}" for c in kept[:10]) + (" ..." if len(kept) > 10 else "")
                refused[parent] = (
                    f"run {parent}'s weights are used by run {named}: delete "
                    f"{'it' if len(kept) == 1 else 'them'} in the same request, or keep it"
                )
                changed = True
    return refused


def delete_runs(*, session: Session, run_ids: list[int]) -> dict[int, str | None]:
    """Delete finished runs with everything stored for them (metrics, summaries, files and
    their chunks, the checkpoint, attempts, trials) in the caller's transaction; each run's
    outcome: None (deleted) or why it was kept."""
    refused = deletion_refusals(session, run_ids)
    doomed = sorted(set(run_ids) - set(refused))
    if doomed:
        _delete_rows(session, doomed)
    return {run_id: refused.get(run_id) for run_id in run_ids}


def _delete_rows(session: Session, ids: list[int]) -> None:
    """Every row of these runs, and every reference to them cleared."""
    groups = set(
        session.scalars(select(Run.group_id).where(Run.id.in_(ids), Run.group_id.is_not(None)))
    )
    studies = {
        name
        for name in session.scalars(select(Run.study_name).where(Run.id.in_(ids)))
        if name is not None
    }
    files = select(Artifact.id).where(Artifact.run_id.in_(ids)).scalar_subquery()
    statements = [
        delete(ArtifactChunk).where(ArtifactChunk.artifact_id.in_(files)),
        *(delete(m).where(m.run_id.in_(ids)) for m in (Artifact, Metric, MetricSummary)),
        *(delete(m).where(m.run_id.in_(ids)) for m in (RunSample, TuneTrial, RunAttempt, RunParam)),
        update(Run).where(Run.source_run_id.in_(ids)).values(source_run_id=None),
        update(WorkerRecord)
        .where(WorkerRecord.current_run_id.in_(ids))
        .values(current_run_id=None),
        delete(Run).where(Run.id.in_(ids)),
    ]
    for statement in statements:
        session.execute(statement.execution_options(synchronize_session=False))
    for group in session.scalars(select(RunGroup).where(RunGroup.id.in_(groups))):
        if not session.scalar(select(func.count(Run.id)).where(Run.group_id == group.id)):
            session.delete(group)  # a study or parallel tune with no run left
        elif (group.params or {}).get("parent_run_id") in ids:
            group.params = {**group.params, "parent_run_id": None}
    left = set(session.scalars(select(Run.study_name).where(Run.study_name.in_(studies))))
    delete_optuna_studies(session, sorted(studies - left))  # a parallel tune's last run
    session.flush()


# Optuna's own tables (its RDB storage shares our database), children first.
_OPTUNA_TRIAL_TABLES = (
    "trial_heartbeats",
    "trial_intermediate_values",
    "trial_params",
    "trial_system_attributes",
    "trial_user_attributes",
    "trial_values",
)
_OPTUNA_STUDY_TABLES = (
    "study_directions",
    "study_system_attributes",
    "study_user_attributes",
    "trials",
)


def delete_optuna_studies(session: Session, names: list[str]) -> None:
    """Delete Optuna's rows of these studies in the caller's transaction (Optuna's own
    `delete_study` would commit on its own connection, before our delete is safe). Tables
    Optuna has not created yet (no tune ever ran) are skipped."""
    if not names:
        return
    present = set(inspect(session.connection()).get_table_names())
    if "studies" not in present:
        return
    studies = "SELECT study_id FROM studies WHERE study_name IN :names"
    trials = f"SELECT trial_id FROM trials WHERE study_id IN ({studies})"
    statements = [f"DELETE FROM {t} WHERE trial_id IN ({trials})" for t in _OPTUNA_TRIAL_TABLES]
    statements += [f"DELETE FROM {t} WHERE study_id IN ({studies})" for t in _OPTUNA_STUDY_TABLES]
    statements.append("DELETE FROM studies WHERE study_name IN :names")
    for statement in statements:
        table = statement.split()[2]
        if table in present:
            query = text(statement).bindparams(bindparam("names", expanding=True))
            session.execute(query, {"names": names})
