"""Housekeeping any process can do, with no extra service: give up on runs whose worker
went silent (re-queueing them while they have tries left) and re-send runs whose queue
message never arrived. Data set imports likewise: a running import whose worker went silent
(or that ran past its time budget) fails and releases its name; a queued one whose message
was lost is sent again; finished ones are forgotten after a week. Each round also asks the
scheduler which running runs step aside for queued runs of higher priority
(store.scheduler.preempt): their workers read the mark at the next beat and pause at the
next epoch boundary.

The web app and every worker run `Upkeep.round()` every few seconds. Rounds in several
processes are safe together: every change is a conditional UPDATE that only one wins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from jobspec import kind_names, kinds
from jobspec.scheduling import Lane
from jobspec.status import AttemptOutcome, RunStatus
from store import clock, health, resend, scheduler
from store.datasets import lifecycle as imports_lifecycle
from store.dml import execute_dml
from store.runs import staging
from store.runs.attempts import end_attempt
from store.runs.models import Run
from store.settings import Settings

log = logging.getLogger(__name__)


def reap_stale(
    *, session: Session, stale_after: float, exclude: frozenset[int] = frozenset()
) -> list[tuple[int, RunStatus]]:
    """Running runs silent for stale_after seconds (by the database's clock): re-queued
    while they have automatic re-tries left, else failed (cancelled if a cancel was asked
    for). Returns (id, status)."""
    now = clock.now(session)
    cutoff = now - timedelta(seconds=stale_after)
    note = f"no heartbeat for {stale_after:.0f} s: its worker died, froze or lost its machine"
    silent = session.scalars(
        select(Run.id).where(Run.status == RunStatus.RUNNING, Run.heartbeat_at < cutoff)
    ).all()
    done = []
    for run_id in silent:
        if run_id in exclude:
            continue
        status = _give_up(session, run_id, cutoff=cutoff, now=now, note=note)
        if status is not None:
            done.append((run_id, status))
    return done


def _give_up(
    session: Session, run_id: int, *, cutoff: datetime, now: datetime, note: str
) -> RunStatus | None:
    """Give one silent run up, as a compare-and-set on what the decision read (its attempt,
    its silence and whether a cancel was asked for): a beat, a claim or a cancel landing
    between the read and the write makes the write miss, and the row is read again, so a
    cancel is never lost (a queued run never keeps one). None: it is not silent any more."""
    for _ in range(3):
        row = session.execute(
            select(Run.attempts, Run.retries_left, Run.cancel_requested, Run.max_attempts).where(
                Run.id == run_id, Run.status == RunStatus.RUNNING, Run.heartbeat_at < cutoff
            )
        ).first()
        if row is None:
            return None
        attempt, retries_left, cancel, max_attempts = row
        values = _after_loss(attempt, retries_left, cancel, max_attempts, note, now)
        touched = execute_dml(
            session,
            update(Run)
            .where(
                Run.id == run_id,
                Run.status == RunStatus.RUNNING,
                Run.attempts == attempt,
                Run.heartbeat_at < cutoff,
                Run.cancel_requested.is_(bool(cancel)),
            )
            .values(**values)
            .execution_options(synchronize_session=False),
        )
        if touched:
            end_attempt(session, run_id, attempt, AttemptOutcome.LOST, note)
            return RunStatus(values["status"])
    return None  # moved under us again and again: the next round decides


def _after_loss(
    attempt: int, retries_left: int, cancel: bool, max_attempts: int, note: str, now: datetime
) -> dict[str, Any]:
    if cancel:
        return {"status": RunStatus.CANCELLED, "finished_at": now}
    if retries_left > 0:
        return {
            "status": RunStatus.QUEUED,
            "queued_at": now,
            "sent_at": None,
            "retries_left": retries_left - 1,
        }
    return {
        "status": RunStatus.FAILED,
        "finished_at": now,
        "error": f"worker stopped responding on attempt {attempt} of {max_attempts} ({note}). "
        "Re-queue to resume from its last checkpoint.",
    }


def due_for_send(
    session: Session, *, never_sent_grace: float, resend_after: float, idle_within: float
) -> list[tuple[int, str]]:
    """Queued runs whose message should go (again): never sent after a grace period, or
    sent long ago while a worker sat idle. Runs no worker would claim (a cancel pending,
    a parent still training) are left alone. Times are the database's (store.clock)."""
    now = clock.now(session)
    lost = and_(Run.sent_at.is_(None), Run.queued_at < now - timedelta(seconds=never_sent_grace))
    if resend.a_worker_is_idle(session, within=idle_within, now=now):
        lost = or_(lost, Run.sent_at < now - timedelta(seconds=resend_after))
    rows = session.execute(
        select(Run.id, Run.kind).where(scheduler.claimable(), lost).order_by(Run.queued_at, Run.id)
    ).all()
    return [(run_id, kind) for run_id, kind in rows]


def wakes_wanted(session: Session, held: int | None) -> int | None:
    """How many more wake messages the training lane needs: one per claimable run, less
    those the broker already holds (any wake claims whatever is next, so a waiting message
    serves every run). None when the broker cannot say: then every due run is sent. This
    bounds the broker's backlog by the queue's length, whatever the workers do (a worker
    that reports idle but takes nothing would otherwise be sent a message per run every
    re-send window, for as long as it stays deaf). `held`: the wakes the broker holds for
    the training lane (store.queue.waiting), asked outside any transaction."""
    if held is None:
        return None
    claimable = session.scalar(select(func.count()).select_from(Run).where(scheduler.claimable()))
    return max(0, int(claimable or 0) - held)


def take_for_send(session: Session, run_id: int, *, resend_after: float) -> bool:
    """Claim the right to send run_id's message now (one process wins), while a worker
    would still claim the run."""
    return resend.claim_send(session, Run, run_id, scheduler.claimable(), resend_after=resend_after)


def send_failed(session: Session, run_id: int) -> None:
    """The send did not go out: try again next round."""
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(sent_at=None)
        .execution_options(synchronize_session=False)
    )


class RoundReport(TypedDict):
    """What one upkeep round did: runs reaped (with their new status), runs re-sent,
    imports failed (with why), imports re-sent and running runs asked to step aside."""

    reaped: list[tuple[int, RunStatus]]
    sent: list[int]
    imports_failed: list[tuple[int, str]]
    imports_sent: list[int]
    set_aside: list[scheduler.SetAside]


class Upkeep:
    """One process's upkeep loop state. Reaping waits until this process has reached the
    store for a whole stale window: after an outage that hit everyone, live workers get
    a full window to beat again before anyone is given up for dead."""

    def __init__(
        self,
        *,
        session_scope: Callable[[], AbstractContextManager[Session]],
        send: Callable[[str, int], str],
        settings: Settings,
        own_runs: Callable[[], frozenset[int]] = frozenset,
        waiting: Callable[[Lane], int | None] = lambda _lane: None,
    ) -> None:
        self.session_scope, self.send, self.settings = session_scope, send, settings
        self.own_runs = own_runs
        self.waiting = waiting  # messages the broker holds for a lane (None: it cannot say)
        self.store_up_since: float | None = None
        self.unknown_kinds: set[int] = set()  # runs of a kind this process cannot send

    def store_down(self) -> None:
        """The caller failed to reach the store: reaping waits a whole window once it is back."""
        self.store_up_since = None

    def round(self) -> RoundReport:
        """Reap, set aside, then re-send; returns what it did. Raises when the store is
        unreachable."""
        try:
            reaped, imports_failed = self._reap()
        except Exception:
            self.store_down()
            raise
        set_aside = self._preempt()
        return {
            "reaped": reaped,
            "sent": self._resend(),
            "imports_failed": imports_failed,
            "imports_sent": self._resend_imports(),
            "set_aside": set_aside,
        }

    def _preempt(self) -> list[scheduler.SetAside]:
        """Ask running runs to step aside for queued runs of higher priority (one short
        transaction; the marks are compare-and-sets, safe beside other processes')."""
        with self.session_scope() as session:
            marked = scheduler.preempt(session, self.settings)
        for mark in marked:
            log.info(
                "run %s: asked to step aside for run %s (priority %s)",
                mark.run_id,
                mark.for_run_id,
                mark.for_priority,
            )
        return marked

    def _reap(self) -> tuple[list[tuple[int, RunStatus]], list[tuple[int, str]]]:
        now = time.monotonic()
        settings = self.settings
        with self.session_scope() as session:
            # A write, not SELECT 1: a store that answers but cannot write (a full disk)
            # keeps everyone from being given up for dead until writes land again.
            health.require_writable_noted(session.get_bind())
            if self.store_up_since is None:
                self.store_up_since = now
            if now - self.store_up_since < settings.stale_after_seconds:
                return [], []
            reaped = reap_stale(
                session=session, stale_after=settings.stale_after_seconds, exclude=self.own_runs()
            )
            imports_failed = imports_lifecycle.reap(
                session=session,
                stale_after=settings.stale_after_seconds,
                timeout=settings.import_timeout_seconds,
            )
            imports_lifecycle.purge_finished(session)
            staging.sweep(session)  # streams no attempt can publish any more
        for run_id, status in reaped:
            log.warning("run %s: its worker stopped responding; run is now %s", run_id, status)
        for import_id, message in imports_failed:
            log.warning("import %s failed: %s", import_id, message)
        return reaped, imports_failed

    def _resend_imports(self) -> list[int]:
        """Queued imports whose message was lost go again (a redelivery is claimed once)."""
        resend_after = self.settings.resend_after_seconds
        with self.session_scope() as session:
            due = imports_lifecycle.due_for_send(
                session, resend_after=resend_after, idle_within=self.settings.stale_after_seconds
            )
        sent = []
        for import_id in due:
            with self.session_scope() as session:
                if not imports_lifecycle.take_for_send(
                    session, import_id, resend_after=resend_after
                ):
                    continue
            try:
                self.send(kind_names.IMPORT, import_id)
            except Exception as err:  # sent_at stays: the next try comes a window later
                log.warning("import %s: could not send its message (%s)", import_id, err)
                break
            log.info("import %s: queued without a worker taking it; sent again", import_id)
            sent.append(import_id)
        return sent

    def _resend(self) -> list[int]:
        settings = self.settings
        with self.session_scope() as session:
            due = due_for_send(
                session,
                never_sent_grace=2 * settings.heartbeat_seconds,
                resend_after=settings.resend_after_seconds,
                idle_within=settings.stale_after_seconds,
            )
        wanted = None
        if due:  # the broker is asked with no transaction open, then the store again
            held = self.waiting(Lane.TRAINING)
            with self.session_scope() as session:
                wanted = wakes_wanted(session, held)
        sent: list[int] = []
        for run_id, kind in due:
            if wanted is not None and len(sent) >= wanted:
                break  # enough wakes wait in the broker already: more would only pile up
            if kinds.find(kind) is None:  # its plug-in is not installed here: not a broker fault
                if run_id not in self.unknown_kinds:
                    self.unknown_kinds.add(run_id)
                    log.warning("run %s: kind %r is unknown here; not sent", run_id, kind)
                continue
            with self.session_scope() as session:
                if not take_for_send(session, run_id, resend_after=settings.resend_after_seconds):
                    continue
            try:
                task_id = self.send(kind, run_id)
            except Exception as err:
                log.warning("run %s: could not send its message (%s); will retry", run_id, err)
                with self.session_scope() as session:
                    send_failed(session, run_id)
                break  # the queue is down: the rest would fail the same way
            with self.session_scope() as session:
                session.execute(
                    update(Run)
                    .where(Run.id == run_id)
                    .values(task_id=task_id)
                    .execution_options(synchronize_session=False)
                )
            log.info("run %s: queued without a message reaching a worker; sent again", run_id)
            sent.append(run_id)
        return sent
