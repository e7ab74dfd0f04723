"""store/scheduler.py: the one rule, the claim that follows it, the panel's plan that
predicts it, and setting runs aside; on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import delete, update

from jobspec.scheduling import Lane
from jobspec.status import AttemptOutcome, RunStatus
from store import clock, scheduler
from store.db import session_scope
from store.runs import attempts
from store.runs.models import Run, RunAttempt
from store.workers import service as workers_service
from store.workers.models import WorkerRecord

TRAINING = scheduler.Capacity(Lane.TRAINING)


@pytest.fixture()
def clean(store):
    """No runs or workers of other tests; yields the data set id."""
    with session_scope() as session:
        session.execute(delete(RunAttempt))
        session.execute(update(Run).values(parent_run_id=None))
        session.execute(delete(Run))
        session.execute(delete(WorkerRecord))
    return store


def _queue(dataset_id: int, specs: list[tuple[int, str | None]], **extra) -> list[int]:
    """Queued runs, one per (priority, owner), queued a second apart in that order."""
    ids = []
    with session_scope() as session:
        now = clock.now(session)
        for index, (priority, owner) in enumerate(specs):
            run = Run(
                kind="pretrain",
                name=f"r{index}",
                params={},
                dataset_id=dataset_id,
                status=RunStatus.QUEUED,
                priority=priority,
                launched_by=owner,
                queued_at=now - timedelta(seconds=1000 - index),
                **extra,
            )
            session.add(run)
            session.flush()
            ids.append(run.id)
    return ids


def _claim(capacity=TRAINING) -> int | None:
    with session_scope() as session:
        got = scheduler.claim_next(session, capacity, worker_host="w", device="cpu", versions={})
        return None if got is None else got.run_id


def _finish(run_id: int) -> None:
    with session_scope() as session:
        attempt = session.get_one(Run, run_id).attempts
        attempts.finish(session=session, run_id=run_id, attempt=attempt, status=RunStatus.SUCCEEDED)


def _plan_one_worker() -> list[int]:
    with session_scope() as session:
        queued = list(session.query(Run).filter(Run.status == RunStatus.QUEUED))
        waiting = [
            scheduler.Waiting(r.id, r.launched_by, r.priority, r.queued_at, r.kind, estimate=60.0)
            for r in queued
        ]
        shares = scheduler.Shares.read(session, {r.launched_by for r in queued})
        placed = scheduler.plan(
            waiting=waiting,
            busy=[],
            slots=[scheduler.Slot("w", TRAINING)],
            shares=shares,
            now=clock.now(session),
        )
    return [p.id for p in sorted(placed, key=lambda p: p.place or 10**9)]


def test_priority_first_then_age(clean):
    low, high, mid = _queue(clean, [(0, None), (10, None), (5, None)])
    assert [_claim(), _claim(), _claim(), _claim()] == [high, mid, low, None]


def test_two_names_take_turns(clean):
    a = _queue(clean, [(0, "ana")] * 4)
    _queue(clean, [(0, "ben")] * 4)
    order = []
    for _ in range(8):
        run_id = _claim()
        order.append(run_id)
        _finish(run_id)
    owners = ["ana" if r in a else "ben" for r in order]
    assert owners == ["ana", "ben"] * 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_plan_is_the_start_order_on_one_worker(clean, seed):
    rng = random.Random(seed)
    specs = [(rng.choice([0, 0, 5, 10]), rng.choice(["ana", "ben", "cy", None])) for _ in range(30)]
    _queue(clean, specs)
    predicted = _plan_one_worker()
    started = []
    while (run_id := _claim()) is not None:
        started.append(run_id)
        _finish(run_id)
    assert started == predicted


def test_capacity_gpu_and_memory(clean):
    plain, gpu, big = _queue(clean, [(0, None), (0, None), (0, None)])
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == gpu).values(needs_gpu=True))
        session.execute(update(Run).where(Run.id == big).values(min_gpu_memory_mb=40000))
    cpu_lane = scheduler.Capacity(Lane.CPU)
    assert _claim(cpu_lane) is None
    small_gpu = scheduler.Capacity(Lane.TRAINING, gpu=True, gpu_memory_mb=16000)
    assert _claim(scheduler.Capacity(Lane.TRAINING)) == plain
    assert _claim(small_gpu) == gpu
    assert _claim(small_gpu) is None
    assert _claim(scheduler.Capacity(Lane.TRAINING, gpu=True, gpu_memory_mb=80000)) == big


def test_preempt_marks_the_lowest_ranked_runner_once(clean):
    from store.settings import get_settings

    settings = get_settings().model_copy(update={"preempt_after_seconds": 0})
    low = _queue(clean, [(0, None)])[0]
    assert _claim() == low
    with session_scope() as session:
        workers_service.report(
            session=session, name="w1", host="h", device="cpu", current_run_id=low
        )
    urgent = _queue(clean, [(10, None)])[0]
    with session_scope() as session:
        marked = scheduler.preempt(session, settings)
    assert [(m.run_id, m.for_run_id) for m in marked] == [(low, urgent)]
    with session_scope() as session:
        assert scheduler.preempt(session, settings) == []  # once
        asked = scheduler.set_aside_request(session, low)
        assert asked is not None and asked.for_run_id == urgent
        attempt = session.get_one(Run, low).attempts
        attempts.hand_back(
            session=session,
            run_id=low,
            attempt=attempt,
            reason=f"set aside for run #{urgent}",
            outcome=AttemptOutcome.PREEMPTED,
        )
    assert _claim() == urgent
    assert _claim() == low  # kept its place
    with session_scope() as session:
        outcomes = [a.outcome for a in session.query(RunAttempt).filter_by(run_id=low)]
    assert AttemptOutcome.PREEMPTED in outcomes
