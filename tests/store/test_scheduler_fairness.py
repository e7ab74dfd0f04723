"""Fair share, priorities and the panel's plan, checked against store/scheduler.py's claim
on the store's own rows (SQLite and PostgreSQL), with no worker and no training.

Fair share, as the rule states it: among queued runs of the same priority, the token name
holding the fewest running runs goes first, then the one whose last start is oldest. So
with two names holding queued work and N workers, the counts of runs each holds never
differ by more than one at a claim: each holds about N/2 workers. It counts runs, not
seconds: with runs of similar lengths that is also about half the worker-seconds each
(checked below within 40-60 % over 60 runs); a name whose runs are all far longer holds
more of the time.

`simulate` is a discrete event loop over simulated time: N claimers, runs of given lengths;
each time a worker frees up, the runs that ended by then are finished in the store (in the
order they ended) and the worker calls `claim_next`. Claims happen in simulated-time order,
so the database's own start times keep the same order as the simulated ones.
"""

from __future__ import annotations

import heapq
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, update

from jobspec.scheduling import Lane
from jobspec.status import RunStatus
from store import clock, scheduler
from store.db import get_engine, session_scope
from store.runs import attempts
from store.runs.models import Run, RunAttempt
from store.workers.models import WorkerRecord

TRAINING = scheduler.Capacity(Lane.TRAINING)
SLOW_PROPERTY = settings(
    max_examples=12,
    deadline=None,  # a real database per example: its time is not the property
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _clean() -> None:
    """This module's database holds only its own rows: a fresh queue per example."""
    with session_scope() as session:
        session.execute(delete(RunAttempt))
        session.execute(update(Run).values(parent_run_id=None))
        session.execute(delete(Run))
        session.execute(delete(WorkerRecord))


@dataclass(frozen=True)
class Spec:
    """A run to queue: its priority, owner (token name), parent (an index among the runs
    queued in the same call) and length in simulated seconds."""

    priority: int = 0
    owner: str | None = None
    parent: int | None = None
    length: float = 1.0
    queued: int | None = None  # seconds before now it was queued (None: in list order)


@dataclass
class Queued:
    id: int
    spec: Spec


def _queue(dataset_id: int, specs: list[Spec]) -> list[Queued]:
    """Queued runs, queued a second apart in list order unless a spec says when."""
    out: list[Queued] = []
    with session_scope() as session:
        now = clock.now(session)
        for index, spec in enumerate(specs):
            ago = spec.queued if spec.queued is not None else 10_000 - index
            run = Run(
                kind="pretrain",
                name=f"fair {index}",
                params={},
                dataset_id=dataset_id,
                status=RunStatus.QUEUED,
                priority=spec.priority,
                launched_by=spec.owner,
                queued_at=now - timedelta(seconds=ago),
                parent_run_id=None if spec.parent is None else out[spec.parent].id,
            )
            session.add(run)
            session.flush()
            out.append(Queued(run.id, spec))
    return out


def _started_before(dataset_id: int, owner: str | None, seconds_ago: float) -> None:
    """A finished run of `owner` that started `seconds_ago` (its last start, for the rule)."""
    with session_scope() as session:
        now = clock.now(session)
        session.add(
            Run(
                kind="pretrain",
                name="history",
                params={},
                dataset_id=dataset_id,
                status=RunStatus.SUCCEEDED,
                launched_by=owner,
                queued_at=now - timedelta(seconds=seconds_ago + 1),
                started_at=now - timedelta(seconds=seconds_ago),
                finished_at=now - timedelta(seconds=seconds_ago / 2),
            )
        )


def _claim(capacity: scheduler.Capacity = TRAINING) -> int | None:
    with session_scope() as session:
        got = scheduler.claim_next(session, capacity, worker_host="w", device="cpu", versions={})
        return None if got is None else got.run_id


def _finish(run_id: int) -> None:
    with session_scope() as session:
        attempt = session.get_one(Run, run_id).attempts
        attempts.finish(session=session, run_id=run_id, attempt=attempt, status=RunStatus.SUCCEEDED)


@dataclass
class Start:
    run_id: int
    owner: str | None
    priority: int
    at: float
    length: float
    running_after: dict[str | None, int]  # runs each name holds right after this claim
    waiting_owners: set[str | None]  # names with queued work just before this claim
    best_waiting: int  # the highest priority among claimable queued runs before it


@dataclass
class Simulation:
    """N claimers over simulated time; `arrivals`: (time, specs) queued when time comes."""

    dataset_id: int
    workers: int
    arrivals: list[tuple[float, list[Spec]]] = field(default_factory=list)
    runs: dict[int, Spec] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)  # run id -> its parent's id
    starts: list[Start] = field(default_factory=list)

    def add(self, specs: list[Spec]) -> list[int]:
        queued = _queue(self.dataset_id, specs)
        self.runs.update({q.id: q.spec for q in queued})
        for q in queued:
            if q.spec.parent is not None:
                self.parents[q.id] = queued[q.spec.parent].id
        return [q.id for q in queued]

    def run(self) -> list[Start]:
        free = [(0.0, worker) for worker in range(self.workers)]
        ends: list[tuple[float, int]] = []
        pending = sorted(self.arrivals, key=lambda a: a[0])
        waiting = set(self.runs)
        done: set[int] = set()
        while free:
            at, worker = heapq.heappop(free)
            while ends and ends[0][0] <= at:
                done.add(ended := heapq.heappop(ends)[1])
                _finish(ended)
            while pending and pending[0][0] <= at:
                waiting |= set(self.add(pending.pop(0)[1]))
            ready = [r for r in waiting if self._parent_done(r, done)]
            run_id = _claim()
            if run_id is None:
                later = [t for t, _ in ends] + [t for t, _ in pending[:1]]
                if later:  # something may become claimable then
                    heapq.heappush(free, (min(t for t in later if t > at), worker))
                continue
            assert run_id in ready, (run_id, ready)
            spec = self.runs[run_id]
            waiting.discard(run_id)
            heapq.heappush(ends, (at + spec.length, run_id))
            heapq.heappush(free, (at + spec.length, worker))
            running = Counter(self.runs[r].owner for _, r in ends)
            self.starts.append(
                Start(
                    run_id,
                    spec.owner,
                    spec.priority,
                    at,
                    spec.length,
                    dict(running),
                    {self.runs[r].owner for r in ready},
                    max(self.runs[r].priority for r in ready),
                )
            )
        for _, run_id in sorted(ends):
            _finish(run_id)
        return self.starts

    def _parent_done(self, run_id: int, done: set[int]) -> bool:
        parent = self.parents.get(run_id)
        return parent is None or parent in done


def worker_seconds(starts: list[Start], until: float) -> dict[str | None, float]:
    """Each name's worker-seconds in [0, until]."""
    held: dict[str | None, float] = {}
    for s in starts:
        held[s.owner] = held.get(s.owner, 0.0) + max(0.0, min(s.at + s.length, until) - s.at)
    return held


def _both_waiting_until(starts: list[Start], names: set) -> float:
    """The last claim at which every one of `names` still had queued work."""
    return max(s.at for s in starts if names <= s.waiting_owners)


# --- fair share between two names ---


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_two_names_each_hold_about_half_the_workers(store, workers, seed):
    _clean()
    rng = random.Random(seed)
    sim = Simulation(store, workers)
    # ana queued all of hers first: first come, first served would give her every worker.
    sim.add([Spec(0, "ana", length=rng.uniform(1, 5)) for _ in range(30)])
    sim.add([Spec(0, "ben", length=rng.uniform(1, 5)) for _ in range(30)])
    starts = sim.run()
    assert len(starts) == 60
    contested = [s for s in starts if {"ana", "ben"} <= s.waiting_owners]
    for s in contested:  # the rule itself: never more than one run apart
        counts = [s.running_after.get("ana", 0), s.running_after.get("ben", 0)]
        assert max(counts) - min(counts) <= 1, (s, counts)
        assert sum(counts) <= workers
    until = _both_waiting_until(starts, {"ana", "ben"})
    held = worker_seconds(starts, until)
    share = held["ana"] / (held["ana"] + held["ben"])
    assert 0.4 <= share <= 0.6, f"ana held {share:.0%} of the worker-seconds, {held}"


@given(
    lengths=st.lists(st.floats(0.1, 50), min_size=12, max_size=24),
    workers=st.sampled_from([1, 2, 4]),
    split=st.integers(3, 9),
)
@SLOW_PROPERTY
def test_fair_share_holds_for_any_run_lengths(store, lengths, workers, split):
    """Whatever the lengths: at each claim both names still wait at, the runs they hold
    differ by one at most (fair share counts runs; seconds follow when lengths are alike)."""
    _clean()
    sim = Simulation(store, workers)
    sim.add([Spec(0, "ana", length=t) for t in lengths[split:]])
    sim.add([Spec(0, "ben", length=t) for t in lengths[:split]])
    for s in sim.run():
        if {"ana", "ben"} <= s.waiting_owners:
            counts = [s.running_after.get("ana", 0), s.running_after.get("ben", 0)]
            assert max(counts) - min(counts) <= 1, (s, counts)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_priorities_win_over_fair_share(store, workers):
    _clean()
    rng = random.Random(workers)
    sim = Simulation(store, workers)
    sim.add([Spec(0, "ana", length=rng.uniform(1, 5)) for _ in range(20)])
    sim.add([Spec(0, "ben", length=rng.uniform(1, 5)) for _ in range(10)])
    # ana, already holding her share, launches urgent work while the queue is long.
    sim.arrivals = [(t, [Spec(10, "ana", length=2.0)]) for t in (3.0, 3.5, 7.0)]
    sim.arrivals.append((4.0, [Spec(5, "ben", length=2.0)]))
    starts = sim.run()
    assert len(starts) == 34
    for s in starts:
        assert s.priority == s.best_waiting, s
    urgent = [s for s in starts if s.priority == 10]
    assert [s.owner for s in urgent] == ["ana"] * 3


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_a_single_run_is_not_starved_by_thirty(store, workers):
    _clean()
    rng = random.Random(10 + workers)
    sim = Simulation(store, workers)
    sim.add([Spec(0, "ana", length=rng.uniform(1, 5)) for _ in range(30)])
    sim.arrivals = [(2.5, [Spec(0, "cy", length=1.0)])]
    starts = sim.run()
    first_after = next(s for s in starts if s.at >= 2.5)
    assert first_after.owner == "cy", [(s.at, s.owner) for s in starts[:10]]


# --- the panel's plan is the claim order on one worker ---

OWNERS = st.sampled_from(["ana", "ben", "cy", None])


@st.composite
def queues(draw) -> tuple[list[Spec], dict]:
    """Up to 20 queued runs of mixed priorities, owners, ages (ties included) and parents,
    and for some names a last start in the past."""
    count = draw(st.integers(1, 20))
    specs: list[Spec] = []
    for index in range(count):
        parent = draw(st.none() | st.integers(0, index - 1)) if index else None
        specs.append(
            Spec(
                priority=draw(st.sampled_from([-1, 0, 0, 5, 10])),
                owner=draw(OWNERS),
                parent=parent,
                queued=draw(st.integers(1, 30)) * 10,
            )
        )
    history = draw(st.dictionaries(OWNERS, st.integers(1, 5000), max_size=3))
    return specs, history


def _plan(workers: int = 1, estimate: float | None = 60.0) -> list[int]:
    """The start order scheduler.plan gives, as the panel asks for it (queued parents
    wait: they are in `parents_running`, their ends planned)."""
    with session_scope() as session:
        queued = list(session.query(Run).filter(Run.status == RunStatus.QUEUED))
        ids = {r.id for r in queued}
        waiting = [
            scheduler.Waiting(
                r.id,
                r.launched_by,
                r.priority,
                r.queued_at,
                r.kind,
                parent_id=r.parent_run_id,
                estimate=estimate,
            )
            for r in queued
        ]
        shares = scheduler.Shares.read(session, {r.launched_by for r in queued})
        placed = scheduler.plan(
            waiting=waiting,
            busy=[],
            slots=[scheduler.Slot(f"w{i}", TRAINING) for i in range(workers)],
            shares=shares,
            now=clock.now(session),
            parents_running={r.parent_run_id: None for r in queued if r.parent_run_id in ids},
        )
    assert all(p.place is not None for p in placed), placed
    return [p.id for p in sorted(placed, key=lambda p: p.place or 0)]


@pytest.mark.parametrize("estimate", [60.0, None], ids=["known", "unknown"])
@given(queue=queues())
@SLOW_PROPERTY
def test_the_plan_on_one_worker_is_the_claim_order(store, estimate, queue):
    _clean()
    specs, history = queue
    if estimate is None:  # a child of a run of unknown length is not placed: no parents
        specs = [replace(spec, parent=None) for spec in specs]
    for owner, ago in history.items():
        _started_before(store, owner, ago)
    _queue(store, specs)
    predicted = _plan(estimate=estimate)
    started = []
    while (run_id := _claim()) is not None:
        started.append(run_id)
        _finish(run_id)
    assert started == predicted


# --- two claimers at once (PostgreSQL: FOR UPDATE SKIP LOCKED) ---


def _claim_in(results: dict, key: str, before_commit: Callable[[], object]) -> None:
    with session_scope() as session:
        got = scheduler.claim_next(session, TRAINING, worker_host=key, device="cpu", versions={})
        results[key] = None if got is None else got.run_id
        before_commit()


def _two_claimers(first_waits_for_second: bool) -> dict:
    """Two threads claim at once; neither commits before both have claimed. With
    `first_waits_for_second` the interleaving is fixed: b claims while a holds its lock."""
    results: dict = {}
    errors: list[BaseException] = []
    both = threading.Barrier(2, timeout=30)
    a_claimed = threading.Event()

    def a() -> None:
        def claimed() -> None:
            a_claimed.set()
            both.wait()

        _claim_in(results, "a", claimed)

    def b() -> None:
        if first_waits_for_second:
            assert a_claimed.wait(30)
        _claim_in(results, "b", both.wait)

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def go() -> None:
            try:
                fn()
            except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
                errors.append(err)
                both.abort()

        return go

    threads = [threading.Thread(target=guarded(f)) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("owners", [["ana", "ben", "ana", "ben"], ["ana"] * 4])
@pytest.mark.parametrize("fixed", [True, False], ids=["interleaved", "racing"])
def test_two_claimers_on_postgres_take_the_top_two_never_the_same(store, owners, fixed):
    if get_engine().dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: a second claimer waits for the first's commit")
    for _ in range(1 if fixed else 5):
        _clean()
        queued = _queue(store, [Spec(0, owner) for owner in owners])
        top_two = {q.id for q in queued[:2]}  # ana's head, then ben's (or ana's next)
        results = _two_claimers(first_waits_for_second=fixed)
        assert results["a"] != results["b"], results
        assert {results["a"], results["b"]} == top_two, results


@given(
    runs=st.lists(
        st.tuples(st.sampled_from([0, 0, 5]), OWNERS, st.integers(1, 30), st.integers(1, 9)),
        min_size=1,
        max_size=16,
    ),
    workers=st.sampled_from([2, 4]),
)
@SLOW_PROPERTY
def test_the_plan_on_several_workers_is_the_simulated_start_order(store, runs, workers):
    """With exact estimates, the plan's start order over N workers is the order N
    claimers start them (simulated time)."""
    _clean()
    specs = [Spec(p, owner, queued=ago * 10, length=float(t)) for p, owner, ago, t in runs]
    queued = _queue(store, specs)
    lengths = {q.id: q.spec.length for q in queued}
    with session_scope() as session:
        rows = list(session.query(Run).filter(Run.status == RunStatus.QUEUED))
        placed = scheduler.plan(
            waiting=[
                scheduler.Waiting(
                    r.id, r.launched_by, r.priority, r.queued_at, estimate=lengths[r.id]
                )
                for r in rows
            ],
            busy=[],
            slots=[scheduler.Slot(f"w{i}", TRAINING) for i in range(workers)],
            shares=scheduler.Shares.read(session, {r.launched_by for r in rows}),
            now=clock.now(session),
        )
    predicted = [p.id for p in sorted(placed, key=lambda p: p.place or 0)]
    sim = Simulation(store, workers)
    sim.runs = {q.id: q.spec for q in queued}
    assert [s.run_id for s in sim.run()] == predicted
