"""Every status change is a compare-and-set (or runs under the run's row lock), so two
changes racing on one run end in a legal state whatever their order: a queued run never
keeps a pending cancel, and a status never moves back.

Each pair (cancel vs claim, vs hand-back, vs give-up, vs finish; give-up vs finish and vs
hand-back; re-queue vs give-up and vs cancel) is driven in both orders, each in two ways:
one after the other, and truly at once: the first holds its transaction open after its
write (a thread paused at a hook) while the second runs into it (PostgreSQL: seen waiting
for the row lock; SQLite: for the write lock), then the first commits. The give-up is also
interrupted between its read and its write by a cancel that commits there. On SQLite and
PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobspec.status import AttemptOutcome, RunStatus
from store import clock
from store.db import session_scope
from store.errors import AttemptSuperseded, InvalidRequest
from store.runs import attempts, upkeep
from store.runs import service as runs_service
from store.runs.models import Run, RunAttempt
from store.settings import get_settings
from tests.stack import scaled, wait_for

Op = Callable[[Session, int], str]  # one change to a run; what it answered, as a word


# --- The changes that race, each in the caller's transaction. ---


def cancel(session: Session, run_id: int) -> str:
    try:
        return str(runs_service.request_cancel(session=session, run_id=run_id).status)
    except InvalidRequest:
        return "refused"


def claim(session: Session, run_id: int) -> str:
    taken = attempts.claim(
        session=session, run_id=run_id, worker_host="h", device="CPU", versions={}
    )
    return "claimed" if taken else "none"


def hand_back(session: Session, run_id: int) -> str:
    try:
        run = attempts.hand_back(session=session, run_id=run_id, attempt=1, reason="SIGTERM")
    except AttemptSuperseded:
        return "superseded"
    return str(run.status)


def finish(session: Session, run_id: int) -> str:
    try:
        run = attempts.finish(session=session, run_id=run_id, attempt=1, status="succeeded")
    except AttemptSuperseded:
        return "superseded"
    return str(run.status)


def give_up(session: Session, run_id: int) -> str:
    """The upkeep's give-up, of this run only (the module's other runs are other tests')."""
    others = session.scalars(
        select(Run.id).where(Run.status == RunStatus.RUNNING, Run.id != run_id)
    ).all()
    reaped = upkeep.reap_stale(session=session, stale_after=60, exclude=frozenset(others))
    return str(reaped[0][1]) if reaped else "none"


def requeue(session: Session, run_id: int) -> str:
    try:
        return str(runs_service.requeue(session=session, run_id=run_id).status)
    except InvalidRequest:
        return "refused"


# --- Runs to race on. ---


def queued(dataset_id: int, max_attempts: int = 2) -> int:
    with session_scope() as session:
        return runs_service.create_run(
            session=session,
            kind="finetune",
            name="race",
            params={"runtime": {"max_attempts": max_attempts}},
            dataset_id=dataset_id,
        ).id


def running(dataset_id: int, max_attempts: int = 2) -> int:
    run_id = queued(dataset_id, max_attempts)
    with session_scope() as session:
        assert claim(session, run_id) == "claimed"
    return run_id


def silent(dataset_id: int, max_attempts: int = 2) -> int:
    """Running, its last beat two minutes ago by the database's clock."""
    run_id = running(dataset_id, max_attempts)
    with session_scope() as session:
        beat = clock.now(session) - timedelta(seconds=120)
        session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=beat))
    return run_id


def failed(dataset_id: int) -> int:
    run_id = silent(dataset_id, max_attempts=1)
    with session_scope() as session:
        assert give_up(session, run_id) == "failed"
    return run_id


SETUPS: dict[str, Callable[[int], int]] = {
    "queued": queued,
    "running": running,
    "silent": silent,
    "silent, no retry left": lambda dataset_id: silent(dataset_id, max_attempts=1),
    "failed": failed,
}


# --- Reading a run back. ---


def state(run_id: int) -> tuple[str, bool]:
    with session_scope() as session:
        row = session.execute(
            select(Run.status, Run.cancel_requested).where(Run.id == run_id)
        ).one()
    return str(row[0]), bool(row[1])


def outcomes(run_id: int) -> list[str]:
    with session_scope() as session:
        return [
            str(outcome)
            for outcome in session.scalars(
                select(RunAttempt.outcome)
                .where(RunAttempt.run_id == run_id)
                .order_by(RunAttempt.number)
            )
        ]


def assert_legal(history: list[tuple[str, bool]]) -> None:
    """Never queued with a cancel pending; each change one the vocabulary allows. Two
    changes race, so between two looks at the run both may have landed: a gap may be two
    allowed moves (failed -> queued -> cancelled when a cancel lands right after a
    re-queue commits), never a move the vocabulary forbids."""
    for status, cancel_requested in history:
        assert not (status == RunStatus.QUEUED and cancel_requested), history
    for (before, _), (after, _) in zip(history, history[1:], strict=False):
        start, end = RunStatus(before), RunStatus(after)
        via = any(start.can_move_to(mid) and mid.can_move_to(end) for mid in RunStatus)
        assert start == end or start.can_move_to(end) or via, history


# --- Driving two changes in a given order. ---


class Step:
    """op in a thread of its own, in one transaction; held: it stops after op, its
    transaction open, until go()."""

    def __init__(self, op: Op, run_id: int, *, held: bool = False) -> None:
        self.op, self.run_id, self.held = op, run_id, held
        self.entered, self.paused, self.released = (threading.Event() for _ in range(3))
        self.answer: str | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with session_scope() as session:
                self.entered.set()
                answer = self.op(session, self.run_id)
                if self.held:
                    session.flush()
                    self.paused.set()
                    assert self.released.wait(scaled(120)), "never released"
            self.answer = answer
        except BaseException as err:  # raised in the test's thread by result()
            self.error = err
        finally:
            self.paused.set()

    def start(self) -> Step:
        self.thread.start()
        return self

    def go(self) -> None:
        self.released.set()

    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self) -> str:
        self.thread.join(scaled(120))
        assert not self.thread.is_alive(), f"{self.op.__name__} never ended"
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


def waiting_for_a_lock() -> bool:
    """PostgreSQL: a statement of this database waits for a lock. SQLite: there is no
    telling from outside; its writer lock makes the order the same either way."""
    with session_scope() as session:
        if session.get_bind().dialect.name != "postgresql":
            return True
        waits = session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return waits > 0


def one_then_other(first: Op, second: Op, run_id: int) -> tuple[list[str], list[tuple[str, bool]]]:
    history = [state(run_id)]
    answers = []
    for op in (first, second):
        with session_scope() as session:
            answers.append(op(session, run_id))
        history.append(state(run_id))
    return answers, history


def at_once(first: Op, second: Op, run_id: int) -> tuple[list[str], list[tuple[str, bool]]]:
    """first holds its transaction open after its write; second runs into it; then first
    commits and second goes on."""
    history = [state(run_id)]
    holder = Step(first, run_id, held=True).start()
    wait_for(holder.paused.is_set, timeout=60, what=f"{first.__name__} to pause")
    if holder.error is not None:
        raise holder.error
    other = Step(second, run_id).start()
    wait_for(other.entered.is_set, timeout=60, what=f"{second.__name__} to start")
    wait_for(
        lambda: other.done() or waiting_for_a_lock(),
        timeout=60,
        what=f"{second.__name__} to wait for {first.__name__}'s lock",
    )
    holder.go()
    answers = [holder.result()]
    history.append(state(run_id))  # second may have landed already: still a legal step
    answers.append(other.result())
    history.append(state(run_id))
    return answers, history


ORDERS = {"in turn": one_then_other, "at once": at_once}

# (first, second, the run they race on) -> (what each answers, the run's state at the end)
CASES: list[tuple[Op, Op, str, list[str], tuple[str, bool]]] = [
    # cancel vs claim
    (cancel, claim, "queued", ["cancelled", "none"], ("cancelled", True)),
    (claim, cancel, "queued", ["claimed", "running"], ("running", True)),
    # cancel vs hand-back: a pending cancel is honoured either way
    (cancel, hand_back, "running", ["running", "cancelled"], ("cancelled", True)),
    (hand_back, cancel, "running", ["queued", "cancelled"], ("cancelled", True)),
    # cancel vs give-up
    (cancel, give_up, "silent", ["running", "cancelled"], ("cancelled", True)),
    (give_up, cancel, "silent", ["queued", "cancelled"], ("cancelled", True)),
    (give_up, cancel, "silent, no retry left", ["failed", "refused"], ("failed", False)),
    # cancel vs finish: the worker's finish stands
    (cancel, finish, "running", ["running", "succeeded"], ("succeeded", True)),
    (finish, cancel, "running", ["succeeded", "refused"], ("succeeded", False)),
    # re-queue vs give-up (the upkeep)
    (give_up, requeue, "silent, no retry left", ["failed", "queued"], ("queued", False)),
    (requeue, give_up, "silent, no retry left", ["refused", "failed"], ("failed", False)),
    (give_up, requeue, "silent", ["queued", "refused"], ("queued", False)),
    # give-up vs the worker's own last word: whoever lands first wins, the other misses
    (give_up, finish, "silent", ["queued", "superseded"], ("queued", False)),
    (finish, give_up, "silent", ["succeeded", "none"], ("succeeded", False)),
    (give_up, hand_back, "silent", ["queued", "superseded"], ("queued", False)),
    (hand_back, give_up, "silent", ["queued", "none"], ("queued", False)),
    # re-queue vs cancel
    (requeue, cancel, "failed", ["queued", "cancelled"], ("cancelled", True)),
    (cancel, requeue, "failed", ["refused", "queued"], ("queued", False)),
]


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize(
    ("first", "second", "setup", "answers", "end"),
    CASES,
    ids=[f"{a.__name__}-then-{b.__name__}-on-{s.replace(', ', '-')}" for a, b, s, *_ in CASES],
)
def test_two_status_changes_end_in_a_legal_state_in_any_order(
    store, order, first, second, setup, answers, end
):
    run_id = SETUPS[setup](store)
    got, history = ORDERS[order](first, second, run_id)
    assert_legal(history)
    assert (got, history[-1]) == (answers, end)


def test_a_cancel_between_the_give_ups_read_and_its_write_is_not_lost(store, monkeypatch):
    run_id = silent(store)
    real = upkeep._after_loss
    landed: list[str] = []

    def cancel_lands_now(*args, **kwargs):  # the give-up has read the run, not written it
        if not landed:
            with session_scope() as session:
                landed.append(cancel(session, run_id))
        return real(*args, **kwargs)

    monkeypatch.setattr(upkeep, "_after_loss", cancel_lands_now)
    with session_scope() as session:
        assert give_up(session, run_id) == "cancelled"
    assert landed == ["running"]
    assert state(run_id) == ("cancelled", True)
    assert outcomes(run_id) == [AttemptOutcome.LOST]


def test_a_hand_back_with_a_cancel_pending_ends_the_run_and_its_attempt_cancelled(store):
    run_id = running(store)
    with session_scope() as session:
        assert cancel(session, run_id) == "running"
    with session_scope() as session:
        assert hand_back(session, run_id) == "cancelled"
    assert outcomes(run_id) == [AttemptOutcome.CANCELLED]
    with session_scope() as session:  # nothing to claim, and it re-queues as any cancelled run
        assert claim(session, run_id) == "none"
        assert requeue(session, run_id) == "queued"
    assert state(run_id) == ("queued", False)


def test_a_hand_back_without_a_cancel_puts_the_run_back_in_the_queue(store):
    run_id = running(store)
    with session_scope() as session:
        assert hand_back(session, run_id) == "queued"
    assert outcomes(run_id) == [AttemptOutcome.INTERRUPTED]
    with session_scope() as session:
        assert claim(session, run_id) == "claimed"


def test_the_database_refuses_a_queued_run_with_a_cancel_pending(store):
    run_id = queued(store)
    with pytest.raises(IntegrityError), session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(cancel_requested=True))
    run_id = running(store)
    with session_scope() as session:
        cancel(session, run_id)
    with pytest.raises(IntegrityError), session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.QUEUED))
    assert state(run_id) == ("running", True)


@pytest.mark.parametrize("cancelled", [False, True])
def test_a_stopping_worker_sends_its_run_again_only_without_a_cancel(store, monkeypatch, cancelled):
    from worker import runner
    from worker.recorder import StoreRecorder

    run_id = running(store)
    if cancelled:
        with session_scope() as session:
            assert cancel(session, run_id) == "running"
    sent: list[int] = []
    monkeypatch.setattr(runner.queue, "enqueue", lambda kind, run: sent.append(run) or "task")
    spec = SimpleNamespace(id=run_id, attempt=1, kind="finetune")
    recorder = StoreRecorder(run_id, 1, settings=get_settings())  # nothing left unwritten
    said = runner._hand_back(spec, recorder)  # type: ignore[arg-type]
    if cancelled:
        assert (said, sent, state(run_id)) == ("cancelled", [], ("cancelled", True))
    else:
        assert (said, sent, state(run_id)) == ("handed back", [run_id], ("queued", False))
