"""The one scheduler: which queued run starts next, decided on the store's rows.

The rule (`rank`), used by the claim and by the queue panel alike:

  1. priority, higher first;
  2. fair share between the token names that launched the runs: the name with the fewest
     runs running now first, then the one whose last start is oldest (never started:
     first), so two names holding queued work take turns and each holds about half the
     workers;
  3. the time it was queued, then its id.

A free worker claims the first run of that order it can take (`claim_next`): its lane
(training workers train; the CPU lane imports and evaluates), its GPU and GPU memory when
the run asks for them, a kind installed here, a parent that has finished. PostgreSQL locks
the pick with FOR UPDATE SKIP LOCKED (two workers claiming at once take different runs);
SQLite has one writer, and the claim is a compare-and-set retried on a lost race. The
broker's message only wakes a worker: it carries no decision.

`plan` replays the same rule over the workers' free times (running runs finishing at their
estimated ends), so the queue panel shows the order runs will start in, if nothing new is
launched and the estimates hold; with one worker that is exactly the start order.

`preempt` sets running runs aside for queued runs of higher priority when no worker is free
for them: the lowest-ranked running run that has run at least STACKLAB_PREEMPT_AFTER_SECONDS
is asked (runs.set_aside_for) to stop at its next epoch boundary (a tune: between trials),
which hands it back to the queue with its checkpoint; it resumes later from there.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import and_, false, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from jobspec.scheduling import Lane
from jobspec.status import RunStatus
from store import clock
from store.dml import execute_dml
from store.runs import attempts
from store.runs.models import Run
from store.settings import Settings
from store.timeutil import aware
from store.workers.models import WorkerRecord

Owner = str | None  # a token name (None: the open site, or runs from before tokens)
NEVER = float("-inf")  # a name that never started a run goes first among equals


@dataclass(frozen=True)
class Capacity:
    """What one worker can take: its lane, whether it has a GPU and how much memory that
    GPU has (None: unknown), and the job kinds installed where it runs."""

    lane: Lane
    gpu: bool = False
    gpu_memory_mb: int | None = None
    kinds: frozenset[str] | None = None  # None: any kind

    def takes(self, needs_gpu: bool, min_gpu_memory_mb: int | None, kind: str | None) -> bool:
        """The same test as `fits()`, in Python (the panel's simulation)."""
        if self.lane is not Lane.TRAINING:
            return False
        if self.kinds is not None and kind not in self.kinds:
            return False
        if (needs_gpu or min_gpu_memory_mb is not None) and not self.gpu:
            return False
        if min_gpu_memory_mb is not None:
            return self.gpu_memory_mb is not None and self.gpu_memory_mb >= min_gpu_memory_mb
        return True

    @classmethod
    def of(cls, worker: WorkerRecord, kinds: frozenset[str] | None = None) -> Capacity:
        """A worker's, as it reported it (a GPU is a device named GPU, or a known size)."""
        gpu = worker.gpu_memory_mb is not None or "gpu" in (worker.device or "").lower()
        return cls(Lane(worker.lane), gpu, worker.gpu_memory_mb, kinds)


@lru_cache(maxsize=64)
def fits(capacity: Capacity) -> ColumnElement[bool]:
    """SQL: runs this worker may take (`Capacity.takes`, as a WHERE clause)."""
    if capacity.lane is not Lane.TRAINING:
        return false()
    rules: list[ColumnElement[bool]] = []
    if capacity.kinds is not None:
        rules.append(Run.kind.in_(sorted(capacity.kinds)))
    if not capacity.gpu:
        rules += [Run.needs_gpu.is_(False), Run.min_gpu_memory_mb.is_(None)]
    elif capacity.gpu_memory_mb is None:
        rules.append(Run.min_gpu_memory_mb.is_(None))
    else:
        rules.append(
            or_(Run.min_gpu_memory_mb.is_(None), Run.min_gpu_memory_mb <= capacity.gpu_memory_mb)
        )
    return and_(true(), *rules)


@lru_cache(maxsize=1)
def claimable() -> ColumnElement[bool]:
    """What a worker may claim: a queued run with no cancel asked for, whose parent (if
    any) has finished. Nothing else is ever (re-)sent or claimed. (An anti-join, so the
    planner looks each parent up by its key once, not a subquery per row.)"""
    parent = aliased(Run)
    parent_active = (
        select(parent.id)
        .where(parent.id == Run.parent_run_id, parent.status.in_(RunStatus.active()))
        .exists()
    )
    return and_(
        Run.status == RunStatus.QUEUED,
        Run.cancel_requested.is_(False),
        or_(Run.parent_run_id.is_(None), ~parent_active),
    )


# --- the rule ---


@dataclass
class Shares:
    """Fair share's state per token name: its runs running now, and its last start (as
    seconds since the epoch; NEVER when it never started one)."""

    running: dict[Owner, int] = field(default_factory=dict)
    last_start: dict[Owner, float] = field(default_factory=dict)

    @classmethod
    def read(cls, session: Session, owners: Iterable[Owner]) -> Shares:
        """The names' runs running now and last starts, in one query (one index lookup
        per name: ix_runs_launched_by_status, ix_runs_launched_by_started)."""
        owners = sorted(set(owners), key=lambda owner: (owner is not None, owner or ""))
        shares = cls()
        if not owners:
            return shares
        columns = []
        for owner in owners:
            mine = Run.launched_by.is_(None) if owner is None else Run.launched_by == owner
            running = select(func.count()).where(mine, Run.status == RunStatus.RUNNING)
            columns += [
                running.scalar_subquery(),
                select(func.max(Run.started_at)).where(mine).scalar_subquery(),
            ]
        row = session.execute(select(*columns)).one()
        for index, owner in enumerate(owners):
            count, last = row[2 * index], row[2 * index + 1]
            shares.running[owner] = int(count or 0)
            shares.last_start[owner] = NEVER if last is None else _moment(last)
        return shares

    def started(self, owner: Owner, at: float) -> None:
        """A run of `owner` starts at `at` (seconds since the epoch)."""
        self.running[owner] = self.running.get(owner, 0) + 1
        self.last_start[owner] = max(self.last_start.get(owner, NEVER), at)

    def finished(self, owner: Owner) -> None:
        self.running[owner] = max(self.running.get(owner, 0) - 1, 0)


def _moment(value: object) -> float:
    """A timestamp column's value (SQLite may answer text) as seconds since the epoch."""
    if isinstance(value, str):
        return clock.at(value).timestamp()
    assert isinstance(value, datetime), value
    return aware(value).timestamp()


def rank(
    *, priority: int, owner: Owner, queued_at: datetime | None, run_id: int, shares: Shares
) -> tuple[float, int, float, float, int]:
    """A queued run's place in the order (smaller starts first): the one rule."""
    queued = aware(queued_at).timestamp() if queued_at is not None else NEVER
    return (
        -priority,
        shares.running.get(owner, 0),
        shares.last_start.get(owner, NEVER),
        queued,
        run_id,
    )


# --- the claim ---


@dataclass(frozen=True)
class Claimed:
    """The run a worker claimed, and the attempt it now holds."""

    run_id: int
    claim: attempts.Claim


def next_for(session: Session, capacity: Capacity, *, limit: int = 8) -> list[int]:
    """The first runs of the order this worker may take (best first): the heads of each
    token name's queue at the highest priority it could take, ranked by the rule."""
    eligible = and_(claimable(), fits(capacity))
    top = select(func.max(Run.priority)).where(eligible).scalar_subquery()
    level = (Run.id, Run.launched_by, Run.queued_at, Run.priority)
    if session.get_bind().dialect.name == "postgresql":
        heads = session.execute(
            select(*level)
            .where(eligible, Run.priority == top)
            .ext(distinct_on(Run.launched_by))
            .order_by(Run.launched_by, Run.queued_at, Run.id)
        ).all()
    else:
        numbered = (
            select(
                *level,
                func.row_number()
                .over(partition_by=Run.launched_by, order_by=(Run.queued_at, Run.id))
                .label("place"),
            )
            .where(eligible, Run.priority == top)
            .subquery()
        )
        heads = session.execute(
            select(
                numbered.c.id, numbered.c.launched_by, numbered.c.queued_at, numbered.c.priority
            ).where(numbered.c.place == 1)
        ).all()
    if not heads:
        return []
    shares = Shares.read(session, {row[1] for row in heads})
    ordered = sorted(
        heads,
        key=lambda row: rank(
            priority=row[3], owner=row[1], queued_at=row[2], run_id=row[0], shares=shares
        ),
    )
    return [row[0] for row in ordered][:limit]


def claim_next(
    session: Session,
    capacity: Capacity,
    *,
    worker_host: str,
    device: str,
    versions: dict[str, str],
) -> Claimed | None:
    """Claim the next run this worker may take, as a new attempt; None when there is none.

    PostgreSQL: the pick is locked with FOR UPDATE SKIP LOCKED, so a second worker claiming
    at the same moment skips it and takes the next. SQLite: the claim is a compare-and-set
    (attempts.claim); a race lost to another worker picks again."""
    postgres = session.get_bind().dialect.name == "postgresql"

    def take(run_id: int) -> Claimed | None:
        claim = attempts.claim(
            session=session,
            run_id=run_id,
            worker_host=worker_host,
            device=device,
            versions=versions,
        )
        return None if claim is None else Claimed(run_id, claim)

    for _ in range(5):
        candidates = next_for(session, capacity)
        if not candidates:
            return None
        for run_id in candidates:
            if postgres and not _lock(session, run_id, capacity):
                continue  # another worker is claiming it right now
            if (claimed := take(run_id)) is not None:
                return claimed
        if postgres:  # every head locked: the next unlocked run in plain order
            fallback = session.scalar(
                select(Run.id)
                .where(claimable(), fits(capacity))
                .order_by(Run.priority.desc(), Run.queued_at, Run.id)
                .limit(1)
                .with_for_update(skip_locked=True, of=Run)
            )
            return None if fallback is None else take(fallback)
    return None


def _lock(session: Session, run_id: int, capacity: Capacity) -> bool:
    locked = session.scalar(
        select(Run.id)
        .where(Run.id == run_id, claimable(), fits(capacity))
        .with_for_update(skip_locked=True, of=Run)
    )
    return locked is not None


# --- the panel's plan: the same rule, replayed over the workers' free times ---


@dataclass(frozen=True)
class Waiting:
    """A queued run as the plan sees it (`estimate`: its length in seconds, None unknown)."""

    id: int
    owner: Owner
    priority: int
    queued_at: datetime | None
    kind: str | None = None
    needs_gpu: bool = False
    min_gpu_memory_mb: int | None = None
    parent_id: int | None = None
    estimate: float | None = None


@dataclass(frozen=True)
class Busy:
    """A running run: whose it is, and seconds until it ends (None: unknown)."""

    id: int
    owner: Owner
    left: float | None
    worker: str | None = None  # the worker it runs on (its name), when known


@dataclass(frozen=True)
class Slot:
    """An online worker: its name, what it can take, and the run it is on (None: free)."""

    name: str
    capacity: Capacity
    current_run_id: int | None = None


@dataclass(frozen=True)
class Placement:
    """Where the plan puts a queued run: its place in the start order (from 1), on which
    worker, and seconds from now to its start and end (end None: its length is unknown).
    `place` None: no online worker can take it (or it waits on something unknown)."""

    id: int
    place: int | None
    worker: str | None
    starts_in: float | None
    finishes_in: float | None


def plan(
    *,
    waiting: Sequence[Waiting],
    busy: Sequence[Busy],
    slots: Sequence[Slot],
    shares: Shares,
    now: datetime,
    parents_running: dict[int, float | None] | None = None,
) -> list[Placement]:
    """The start order `claim_next` will follow, if nothing new is launched and the
    estimates hold: each time a worker frees up, the runs that ended by then free their
    share, and the worker takes the best run by the rule that it can take.

    A running run of unknown length counts as ending now (it blanks nothing; the panel says
    what is left out); a queued run of unknown length ends when it starts, for the same
    reason. `parents_running`: parent run id -> seconds until it ends (None: unknown), for
    parents that are running now; a child waits for its parent's end, queued parents
    included (their end is planned here).

    The queued runs are kept in groups of one owner and one need (GPU, GPU memory, kind),
    each in the rule's order within one owner (priority, queued_at, id): a free worker
    compares the first ready run of each group it can take, so a plan costs about runs x
    groups, not runs squared (10,000 queued runs: the panel answers in well under a second)."""
    shares = Shares(dict(shares.running), dict(shares.last_start))
    base = now.timestamp()
    # (when, tie-break, whose) of runs running in the plan: the tie-break keeps two ends at
    # the same moment from comparing their owners (None and a name do not compare).
    ends: list[tuple[float, int, Owner]] = []
    free: list[tuple[float, int, Slot]] = []  # (free in, tie-break, slot)
    busy_by_id = {b.id: b for b in busy}
    for index, slot in enumerate(slots):
        left = 0.0
        if slot.current_run_id is not None and slot.current_run_id in busy_by_id:
            left = _seconds(busy_by_id[slot.current_run_id].left)
        heapq.heappush(free, (left, index, slot))
    for number, run in enumerate(busy):
        heapq.heappush(ends, (_seconds(run.left), -1 - number, run.owner))
    parent_end: dict[int, float | None] = dict(parents_running or {})
    queue = _Queue(waiting)
    unplaced = {run.id for run in waiting}  # a child waits for a parent still in the queue
    placed: list[Placement] = []
    place = 0
    while free and unplaced:
        at, index, slot = heapq.heappop(free)
        while ends and ends[0][0] <= at:
            shares.finished(heapq.heappop(ends)[2])
        takes = [g for g in queue.groups.values() if slot.capacity.takes(*g.need)]
        heads = [h for g in takes if (h := g.first(unplaced, parent_end, at)) is not None]
        if not heads:
            later = [
                end
                for g in takes
                for run in g.runs
                if run.id in unplaced
                and run.parent_id is not None
                and (end := parent_end.get(run.parent_id)) is not None
                and end > at
            ]
            if later:  # a child becomes ready when its parent ends: this worker waits
                heapq.heappush(free, (min(later), index, slot))
            continue  # nothing this worker can ever take: it leaves the plan
        best = min(
            heads,
            key=lambda run: rank(
                priority=run.priority,
                owner=run.owner,
                queued_at=run.queued_at,
                run_id=run.id,
                shares=shares,
            ),
        )
        unplaced.discard(best.id)
        queue.placed(best.id)
        place += 1
        length = best.estimate
        finish = at + (length or 0.0)
        # Claims happen one after another: a later placement is a later start, even at the
        # same planned second (several free workers, or runs of unknown length).
        shares.started(best.owner, base + at + place * 1e-3)
        heapq.heappush(ends, (finish, place, best.owner))
        parent_end[best.id] = finish if length is not None else None
        placed.append(
            Placement(best.id, place, slot.name, at, finish if length is not None else None)
        )
        heapq.heappush(free, (finish, index, slot))
    placed += [Placement(run.id, None, None, None, None) for run in waiting if run.id in unplaced]
    return placed


@dataclass
class _Group:
    """Queued runs of one owner and one need, in the rule's order within an owner."""

    need: tuple[bool, int | None, str | None]  # (needs_gpu, min_gpu_memory_mb, kind)
    runs: list[Waiting]
    start: int = 0  # runs before it are placed

    def first(
        self, unplaced: set[int], parent_end: dict[int, float | None], at: float
    ) -> Waiting | None:
        """Its first run still waiting whose parent is done by `at`."""
        while self.start < len(self.runs) and self.runs[self.start].id not in unplaced:
            self.start += 1
        for run in itertools.islice(self.runs, self.start, None):
            if run.id in unplaced and _parent_done(run, parent_end, unplaced, at):
                return run
        return None


class _Queue:
    """The waiting runs in groups. A child whose parent is still queued is held out of its
    group until the plan places the parent (it cannot start before): a free worker never
    walks past children that wait for queued parents."""

    def __init__(self, waiting: Sequence[Waiting]):
        queued = {run.id for run in waiting}
        self.groups: dict[tuple[Owner, bool, int | None, str | None], _Group] = {}
        self.held: dict[int, list[Waiting]] = {}  # queued parent id -> its children
        for run in sorted(waiting, key=_order):
            if run.parent_id is not None and run.parent_id in queued:
                self.held.setdefault(run.parent_id, []).append(run)
            else:
                self._group(run).runs.append(run)

    def _group(self, run: Waiting) -> _Group:
        key = (run.owner, run.needs_gpu, run.min_gpu_memory_mb, run.kind)
        if key not in self.groups:
            self.groups[key] = _Group((run.needs_gpu, run.min_gpu_memory_mb, run.kind), [])
        return self.groups[key]

    def placed(self, run_id: int) -> None:
        """`run_id` is placed: its children join their groups, in order."""
        for child in self.held.pop(run_id, []):
            group = self._group(child)
            index = bisect.bisect_left(group.runs, _order(child), key=_order)
            group.runs.insert(index, child)
            group.start = min(group.start, index)


def _order(run: Waiting) -> tuple[int, float, int]:
    """The rule's order among one owner's runs: priority, queued_at, id."""
    queued = aware(run.queued_at).timestamp() if run.queued_at is not None else NEVER
    return (-run.priority, queued, run.id)


def _seconds(left: float | None) -> float:
    return 0.0 if left is None or math.isinf(left) or left < 0 else left


def _parent_done(
    run: Waiting, parent_end: dict[int, float | None], unplaced: set[int], at: float
) -> bool:
    if run.parent_id is None:
        return True
    if run.parent_id in unplaced:
        return False  # the parent is still waiting in the queue
    if run.parent_id not in parent_end:
        return True  # a parent that has finished
    end = parent_end[run.parent_id]
    return end is not None and end <= at


# --- setting running runs aside ---


@dataclass(frozen=True)
class SetAside:
    """A running run asked to step aside, and the queued run it yields to."""

    run_id: int
    for_run_id: int
    for_priority: int


def preempt(session: Session, settings: Settings, *, now: datetime | None = None) -> list[SetAside]:
    """Ask running runs to step aside for queued runs of higher priority that no free
    worker can take: for each such queued run (best first), the lowest-ranked running run
    (lowest priority, then the latest started) that outranks nothing it yields to, has run
    STACKLAB_PREEMPT_AFTER_SECONDS, is on a worker able to take the queued run, and is not
    already stepping aside. Marks left for queued runs that have started (or gone) are
    cleared first. Each mark is a compare-and-set: several processes may run this at once."""
    clear_stale(session)
    if not settings.preemption:
        return []
    now = now or clock.now(session)
    online = list(
        session.scalars(
            select(WorkerRecord).where(
                WorkerRecord.lane == Lane.TRAINING,
                WorkerRecord.last_seen >= now - timedelta(seconds=settings.stale_after_seconds),
            )
        )
    )
    if not online:
        return []
    lowest = session.scalar(
        select(func.min(Run.priority)).where(
            Run.status == RunStatus.RUNNING, Run.set_aside_for.is_(None)
        )
    )
    if lowest is None:
        return []
    eligible = and_(claimable(), Run.priority > lowest)
    queued = session.execute(
        select(Run.id, Run.priority, Run.kind, Run.needs_gpu, Run.min_gpu_memory_mb)
        .where(eligible)
        .order_by(Run.priority.desc(), Run.queued_at, Run.id)
        .limit(50)
    ).all()
    if not queued:
        return []
    yielding = set(
        session.scalars(
            select(Run.set_aside_for).where(
                Run.status == RunStatus.RUNNING, Run.set_aside_for.is_not(None)
            )
        )
    )
    cutoff = now - timedelta(seconds=settings.preempt_after_seconds)
    on = {w.current_run_id: w for w in online if w.current_run_id is not None}
    free = [Capacity.of(w) for w in online if w.current_run_id is None]
    marked: list[SetAside] = []
    for run_id, priority, kind, needs_gpu, min_gpu in queued:
        if run_id in yielding:
            continue
        if any(c.takes(needs_gpu, min_gpu, kind) for c in free):
            continue  # a free worker takes it: nobody needs to step aside
        victims = session.execute(
            select(Run.id, Run.attempts)
            .where(
                Run.status == RunStatus.RUNNING,
                Run.set_aside_for.is_(None),
                Run.priority < priority,
                Run.started_at <= cutoff,
            )
            .order_by(Run.priority, Run.started_at.desc(), Run.id.desc())
        ).all()
        for victim, attempt in victims:
            worker = on.get(victim)
            if worker is not None and not Capacity.of(worker).takes(needs_gpu, min_gpu, kind):
                continue  # its worker could not run the queued one anyway
            touched = execute_dml(
                session,
                update(Run)
                .where(
                    Run.id == victim,
                    Run.status == RunStatus.RUNNING,
                    Run.attempts == attempt,
                    Run.set_aside_for.is_(None),
                )
                .values(set_aside_for=run_id)
                .execution_options(synchronize_session=False),
            )
            if touched:
                marked.append(SetAside(victim, run_id, priority))
                break
    return marked


def clear_stale(session: Session) -> int:
    """Running runs asked to step aside for a run that is no longer waiting (it started,
    was cancelled or deleted): they go on."""
    still_waiting = select(Run.id).where(Run.status == RunStatus.QUEUED).scalar_subquery()
    return execute_dml(
        session,
        update(Run)
        .where(
            Run.status == RunStatus.RUNNING,
            Run.set_aside_for.is_not(None),
            Run.set_aside_for.not_in(still_waiting),
        )
        .values(set_aside_for=None)
        .execution_options(synchronize_session=False),
    )


def set_aside_request(session: Session, run_id: int) -> SetAside | None:
    """Whether a running run is asked to step aside, for which queued run (still queued
    and still of higher priority), or None."""
    target = session.execute(
        select(Run.set_aside_for, Run.priority).where(Run.id == run_id)
    ).first()
    if target is None or target[0] is None:
        return None
    row = session.execute(
        select(Run.priority).where(Run.id == target[0], Run.status == RunStatus.QUEUED)
    ).first()
    if row is None or row[0] <= target[1]:
        return None
    return SetAside(run_id, target[0], row[0])


def with_capacity(capacity: Capacity, **changes: object) -> Capacity:
    """A copy of `capacity` with some fields changed (tests, benches)."""
    return replace(capacity, **changes)  # type: ignore[arg-type]
