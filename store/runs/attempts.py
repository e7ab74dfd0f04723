"""What a worker writes for a run, each write fenced by the attempt that makes it.

Claiming a queued run starts attempt N (runs.attempts = N). Every later write for the run
names N and moves the run's heartbeat with `UPDATE ... WHERE attempts = N AND
status = RunStatus.RUNNING` (the fence): when that touches no row, the run was given up for
dead, re-queued or finished by someone else, and the write raises AttemptSuperseded instead
of landing. The UPDATE also holds the run's row lock until commit, so a reaper or a new
claim waits for a fenced write to land (or roll back) and then sees its fresh heartbeat.

Liveness never waits on data: a worker beats in a transaction of its own (`beat`: the fence
and a read of the cancel flag), stamped with the database's time (store.clock) at the beat.
Its data goes in other transactions: big bytes streamed in staged (store.runs.staging),
then one short transaction that publishes them with the rows and fences last, so the run's
row is locked only for its last moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, null, select, text, update
from sqlalchemy.orm import Session

from jobspec.status import AttemptOutcome, RunStatus
from store import clock
from store.artifacts import service as artifacts_service
from store.artifacts.models import Artifact
from store.base import JSONObject
from store.dml import execute_dml
from store.errors import AttemptSuperseded
from store.notify import outbox
from store.runs import metrics as metrics_service
from store.runs.models import (
    Metric,
    MetricSummary,
    ResumePoint,
    Run,
    RunAttempt,
    TuneTrial,
)
from store.settings import get_settings


@dataclass(frozen=True)
class Claim:
    """The attempt a worker now holds, and where it resumes (None: from the start)."""

    attempt: int
    resume_from: ResumePoint | None


def claim(
    *, session: Session, run_id: int, worker_host: str, device: str, versions: dict[str, str]
) -> Claim | None:
    """queued -> running as a new attempt, atomically; None when cancelled or taken. Its
    start and first heartbeat are the database's time (store.clock), as every beat is."""
    now = clock.now(session)
    claimed = execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED, Run.cancel_requested.is_(False))
        .values(
            status=RunStatus.RUNNING,
            started_at=now,
            finished_at=None,
            heartbeat_at=now,
            worker_host=worker_host,
            device=device,
            versions=versions,
            attempts=Run.attempts + 1,
            error=None,
            traceback=None,
            set_aside_for=None,
        )
        .execution_options(synchronize_session=False),
    )
    if not claimed:
        return None
    run = session.get_one(Run, run_id, populate_existing=True)
    resume_from = _prepare_attempt(session, run)
    session.add(
        RunAttempt(
            run_id=run_id,
            number=run.attempts,
            worker_host=worker_host,
            device=device,
            started_at=now,
            outcome=AttemptOutcome.RUNNING,
            resumed_from=resume_from,
        )
    )
    session.flush()
    return Claim(run.attempts, resume_from)


def _prepare_attempt(session: Session, run: Run) -> ResumePoint | None:
    """Resume from the checkpoint, or clear what an earlier attempt left and start over."""
    artifacts_service.discard_staged(session, run.id)  # streams no attempt can publish now
    if run.checkpoint and not run.fresh_start:
        stage, epoch = run.checkpoint["stage"], int(run.checkpoint["epoch"])
        # Rows past the checkpoint cannot exist (they are written with it), but be sure.
        dropped = execute_dml(
            session,
            delete(Metric).where(
                Metric.run_id == run.id, Metric.key.like(f"{stage}/%"), Metric.step > epoch
            ),
        )
        if dropped:
            metrics_service.rebuild_summaries(session, run.id)
        return {"stage": stage, "epoch": epoch}
    for model in (Metric, MetricSummary, TuneTrial):
        session.execute(delete(model).where(model.run_id == run.id))
    if run.fresh_start:  # asked for: the old files go too (a fresh run makes new ones)
        session.execute(delete(Artifact).where(Artifact.run_id == run.id))
    run.checkpoint, run.fresh_start, run.result = None, False, {}
    return None


def guard(session: Session) -> None:
    """Bound how long this worker transaction may sit idle holding what it locked: a worker
    frozen mid-write (SIGSTOP, swap) is cut off by PostgreSQL, so the reaper, a new claim
    and the web are not blocked behind it. A worker's transactions are all short now (a
    beat, one chunk, the publish), so the bound is the lock wait others put up with (at
    most half a stale window, at least 2 s). (SQLite has one writer and a busy timeout.)"""
    if session.get_bind().dialect.name == "postgresql":
        settings = get_settings()
        bound = min(settings.stale_after_seconds / 2, settings.db_lock_timeout_seconds)
        seconds = max(2, int(bound))
        session.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{seconds}s'"))


def fence(session: Session, run_id: int, attempt: int, **values: Any) -> None:
    """Prove `attempt` still owns the running run (beating, and setting `values`);
    else AttemptSuperseded."""
    guard(session)
    touched = execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id, Run.attempts == attempt, Run.status == RunStatus.RUNNING)
        .values(heartbeat_at=clock.now(session), **values)
        .execution_options(synchronize_session=False),
    )
    if not touched:
        raise AttemptSuperseded(run_id, attempt, _why(session, run_id, attempt))


def _why(session: Session, run_id: int, attempt: int) -> str:
    row = session.execute(select(Run.status, Run.attempts).where(Run.id == run_id)).first()
    if row is None:
        return "the run was deleted"
    status, current = row
    if current != attempt:
        return f"attempt {current} took the run over (it is {status})"
    return f"the run is {status} now (given up for dead or stopped by someone else)"


def beat(
    *, session: Session, run_id: int, attempt: int, progress: JSONObject | None = None
) -> bool:
    """Alive on this run (with how far it got); returns whether a cancel was asked for."""
    fence(session, run_id, attempt, **({} if progress is None else {"progress": progress}))
    return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def finish(
    *,
    session: Session,
    run_id: int,
    attempt: int,
    status: RunStatus | str,
    result: JSONObject | None = None,
    error: str | None = None,
    traceback: str | None = None,
) -> Run:
    """running -> succeeded | failed | cancelled, by the attempt that ran it."""
    status = RunStatus(status)
    assert status.is_finished and RunStatus.RUNNING.can_move_to(status), status
    fence(session, run_id, attempt)
    run = session.get_one(Run, run_id, populate_existing=True)
    values: dict[str, Any] = {"result": result or run.result or {}}
    if run.progress:
        values["progress"] = {**run.progress, "eta_seconds": 0.0}
    _move(
        session,
        run_id,
        attempt,
        status=status.value,
        finished_at=clock.now(session),
        error=error,
        traceback=traceback,
        **values,
    )
    end_attempt(session, run_id, attempt, AttemptOutcome.of_run(status), error)
    session.flush()
    return session.get_one(Run, run_id, populate_existing=True)


def hand_back(
    *,
    session: Session,
    run_id: int,
    attempt: int,
    reason: str,
    costs_retry: bool = False,
    outcome: AttemptOutcome = AttemptOutcome.INTERRUPTED,
) -> Run:
    """running -> queued: this worker is stopping (or the run was set aside for a run of
    higher priority: outcome PREEMPTED); another attempt resumes the run. A cancel asked
    for before the hand-back lands is honoured: the run ends cancelled instead, decided
    inside the same UPDATE, so a queued run never keeps a pending cancel.
    costs_retry: one of the run's automatic re-tries is used (never below zero).
    A run set aside keeps its place in the queue (its queued_at): it was not the one
    that stopped."""
    assert outcome in (AttemptOutcome.INTERRUPTED, AttemptOutcome.PREEMPTED), outcome
    fence(session, run_id, attempt)
    now = clock.now(session)
    cancelled = Run.cancel_requested.is_(True)
    retries: dict[str, Any] = {}
    if costs_retry:
        left = Run.retries_left
        retries["retries_left"] = case((left > 0, left - 1), else_=0)
    _move(
        session,
        run_id,
        attempt,
        status=case((cancelled, RunStatus.CANCELLED.value), else_=RunStatus.QUEUED.value),
        finished_at=case((cancelled, now), else_=null()),
        queued_at=(
            Run.queued_at
            if outcome is AttemptOutcome.PREEMPTED
            else case((cancelled, Run.queued_at), else_=now)
        ),
        sent_at=None,
        set_aside_for=None,
        **retries,
    )
    run = session.get_one(Run, run_id, populate_existing=True)
    if run.status == RunStatus.CANCELLED:
        note = f"{reason}; a cancel was pending, so the run ends cancelled"
        end_attempt(session, run_id, attempt, AttemptOutcome.CANCELLED, note)
    else:
        end_attempt(session, run_id, attempt, outcome, reason)
    session.flush()
    return run


def _move(session: Session, run_id: int, attempt: int, **values: Any) -> None:
    """Move the run on from running, as a compare-and-set on the attempt that holds it
    (the fence just proved it; this repeats the proof in the write itself)."""
    touched = execute_dml(
        session,
        update(Run)
        .where(Run.id == run_id, Run.attempts == attempt, Run.status == RunStatus.RUNNING)
        .values(**values)
        .execution_options(synchronize_session=False),
    )
    if not touched:
        raise AttemptSuperseded(run_id, attempt, _why(session, run_id, attempt))


def end_attempt(
    session: Session,
    run_id: int,
    attempt: int,
    outcome: AttemptOutcome,
    note: str | None = None,
) -> None:
    """Close an attempt's record with how it ended."""
    record = session.get(RunAttempt, (run_id, attempt))
    if record is not None and record.ended_at is None:
        record.ended_at, record.outcome, record.note = clock.now(session), outcome, note
        outbox.attempt_ended(session, run_id, attempt, outcome)  # webhooks (issue 24)
