"""The queue panel: who works on what, what waits, in the order workers will take it, and why.

The order is the scheduler's (store/scheduler.py `plan`, the rule `claim_next` follows):
queued runs are listed by their `place` in the predicted start order, runs no online worker
can take last (by the rule). Lengths and times left come from backend/runs/eta.py, a running
run's through backend/runs/liveness.py (the one ETA every page shows). Each waiting run says
why it waits, in words that stay true until it starts (as Slurm's squeue reasons do).
Data set imports run on the CPU lane and are listed there (backend/runs/panel_imports.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.runs import eta, liveness, panel_imports
from jobspec.scheduling import Lane
from jobspec.status import RunStatus
from store import clock, scheduler
from store.runs.models import Run
from store.timeutil import aware
from store.workers import service as workers_service
from store.workers.models import WorkerRecord

NOW = 0.5  # a planned start this close to now is "next to start"


@dataclass
class _Context:
    """What the reasons read: the workers heard, the runs' parents, the plan's placements."""

    alive: list[WorkerRecord]
    parents: dict[int, tuple[RunStatus, str]]
    placed: dict[int, scheduler.Placement]
    queued: dict[int, Run]


def queue_panel(session: Session, *, online_within: float, now: datetime | None = None) -> dict:
    """Workers online (with their last heartbeat's age), running runs with their ETA, queued
    runs in the order they will start with their place, times and reason, and imports."""
    now = now or clock.now(session)  # the clock that stamped starts, sends and beats
    workers = workers_service.online(session, within_seconds=online_within, now=now)
    alive = liveness.heard(workers, now)
    running, queued = _active(session)
    # The measured rates (a read of recent runs' epochs) only when a run needs an estimate.
    active = running + queued
    timing = eta.Timing(session, liveness.devices(workers, now), active) if active else None
    etas = liveness.etas(session, running, now, workers=workers, timing=timing)
    estimates = {run.id: timing.estimate(run) for run in queued if timing is not None}
    parents = _parents(session, queued)
    placements = _plan(session, queued, running, alive, etas, estimates, parents, now)
    context = _Context(alive, parents, {p.id: p for p in placements}, {r.id: r for r in queued})
    busy = [_running_row(run, etas[run.id], workers, now) for run in running]
    unknown = [row["id"] for row in busy if row["eta_seconds"] is None]
    waiting = []
    for placement in placements:
        run = context.queued[placement.id]
        estimate, source = estimates[run.id]
        row = _queued_row(run, placement, estimate, source, context, now)
        row["leaves_out"] = list(unknown) if placement.place is not None else []
        if estimate is None and placement.place is not None:
            unknown.append(run.id)
        waiting.append(row)
    names = _names(session, {w.current_run_id for w in workers if w.current_run_id})
    return {
        "now": now.isoformat(),
        "silent_after_seconds": liveness.silent_after(),
        "workers": [liveness.worker_row(w, now, names) for w in workers],
        RunStatus.RUNNING: busy,
        RunStatus.QUEUED: waiting,
        "imports": panel_imports.rows(session, workers, now),
        "unknown": unknown,
        "note": _unknown_note(unknown),
    }


def _active(session: Session) -> tuple[list[Run], list[Run]]:
    """The running runs by start and the queued ones by their place in line, read by one
    statement (one snapshot: a run claimed or handed back meanwhile is in one list, never
    both or neither) that refreshes runs the request loaded before (a run page's run read
    while queued and claimed since): the panel's lists and each run's status agree."""
    rows = session.scalars(
        select(Run)
        .where(Run.status.in_([RunStatus.RUNNING, RunStatus.QUEUED]))
        .execution_options(populate_existing=True)
    ).all()
    running = [run for run in rows if run.status == RunStatus.RUNNING]
    queued = [run for run in rows if run.status == RunStatus.QUEUED]
    running.sort(key=lambda run: (run.started_at is None, run.started_at or 0, run.id))
    queued.sort(key=lambda run: (run.queued_at is None, run.queued_at or 0, run.id))
    return running, queued


def waiting_row(session: Session, run_id: int, now: datetime | None = None) -> dict | None:
    """A queued run's row of the panel (its place, reason and times): what its own page
    shows, so the two never disagree (None: not waiting)."""
    found = queue_panel(session, online_within=liveness.listed_within(), now=now)
    return next((row for row in found[RunStatus.QUEUED] if row["id"] == run_id), None)


def _plan(
    session: Session,
    queued: list[Run],
    running: list[Run],
    alive: list[WorkerRecord],
    etas: dict[int, liveness.Eta],
    estimates: dict[int, tuple[float | None, str | None]],
    parents: dict[int, tuple[RunStatus, str]],
    now: datetime,
) -> list[scheduler.Placement]:
    """scheduler.plan over these rows: placed runs by place, then the rest by the rule."""
    on = {w.current_run_id: w.name for w in alive if w.current_run_id is not None}
    waiting = [
        scheduler.Waiting(
            id=run.id,
            owner=run.launched_by,
            priority=run.priority,
            queued_at=aware(run.queued_at),
            kind=run.kind,
            needs_gpu=run.needs_gpu,
            min_gpu_memory_mb=run.min_gpu_memory_mb,
            parent_id=run.parent_run_id,
            estimate=estimates[run.id][0],
        )
        for run in queued
    ]
    busy = [
        scheduler.Busy(run.id, run.launched_by, etas[run.id].seconds, on.get(run.id))
        for run in running
    ]
    slots = [scheduler.Slot(w.name, scheduler.Capacity.of(w), w.current_run_id) for w in alive]
    shares = scheduler.Shares.read(session, {run.launched_by for run in queued})
    # A child waits for a parent still queued until the plan starts (and ends) it, for a
    # running one until its ETA; a parent with no known end holds it out of the plan.
    waits_for: dict[int, float | None] = {
        parent: (etas[parent].seconds if status == RunStatus.RUNNING and parent in etas else None)
        for parent, (status, _) in parents.items()
        if status in RunStatus.active()
    }
    placed = scheduler.plan(
        waiting=waiting, busy=busy, slots=slots, shares=shares, now=now, parents_running=waits_for
    )
    by_id = {run.id: run for run in queued}

    def order(p: scheduler.Placement) -> tuple:
        if p.place is not None:
            return (0, p.place)
        run = by_id[p.id]
        return (
            1,
            scheduler.rank(
                priority=run.priority,
                owner=run.launched_by,
                queued_at=run.queued_at,
                run_id=run.id,
                shares=shares,
            ),
        )

    return sorted(placed, key=order)


def _parents(session: Session, queued: list[Run]) -> dict[int, tuple[RunStatus, str]]:
    ids = {r.parent_run_id for r in queued if r.parent_run_id}
    if not ids:
        return {}
    rows = session.execute(select(Run.id, Run.status, Run.kind).where(Run.id.in_(ids))).all()
    return {run_id: (status, kind) for run_id, status, kind in rows}


def _queued_row(
    run: Run,
    placement: scheduler.Placement,
    estimate: float | None,
    source: str | None,
    context: _Context,
    now: datetime,
) -> dict:
    reason, blocked = reason_for(run, placement, context)
    # A held run gives no start (its reason says what it waits for); where the plan placed
    # it, its planned end still shows.
    start = None if blocked else placement.starts_in
    finish = None if estimate is None else placement.finishes_in
    return {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "priority": run.priority,
        "launched_by": run.launched_by,
        "needs_gpu": run.needs_gpu,
        "min_gpu_memory_mb": run.min_gpu_memory_mb,
        "created_at": aware(run.created_at).isoformat(),
        "queued_at": _iso(run.queued_at),
        "place": placement.place,
        "planned_worker": placement.worker,
        "waiting": reason,
        "blocked": blocked,
        "retry": _retry_note(run),
        "estimated_seconds": estimate,
        "estimate_source": source,  # measured | default | None: unknown
        "starts_in_seconds": start,
        "finishes_in_seconds": finish,
        "starts_at": _at(now, start),
        "finishes_at": _at(now, finish),
    }


def reason_for(run: Run, placement: scheduler.Placement, context: _Context) -> tuple[str, bool]:
    """Why a queued run waits (and whether it is held, so its start time is not given)."""
    parent = context.parents.get(run.parent_run_id or 0)
    if parent is not None and parent[0] in RunStatus.active():
        return f"waits for {parent[1]} run #{run.parent_run_id}", True
    if placement.place is None:
        return _no_worker(run, context.alive), True
    if run.sent_at is None:
        return "not sent yet: sending", True
    if (placement.starts_in or 0.0) <= NOW:
        return "next to start", False
    ahead = [
        context.queued[p.id]
        for p in context.placed.values()
        if p.place is not None and p.place < placement.place
    ]
    if any(other.priority > run.priority for other in ahead):
        return "behind higher-priority runs", False
    if any(_jumped(other, run) for other in ahead):
        return "fair share (another token's turn)", False
    return "waits for a free worker", False


def _jumped(other: Run, run: Run) -> bool:
    """`other` starts first by fair share alone: same priority, another token's, queued later."""
    if other.priority != run.priority or other.launched_by == run.launched_by:
        return False
    return (aware(other.queued_at), other.id) > (aware(run.queued_at), run.id)


def _no_worker(run: Run, alive: list[WorkerRecord]) -> str:
    """Why no online worker can take a run (or that none is online)."""
    if not alive:
        return "no worker online"
    training = [w for w in alive if w.lane == Lane.TRAINING]
    if not training:
        return "no online worker can take it: only CPU-lane workers online"
    if run.min_gpu_memory_mb is not None:
        return f"no online worker can take it: needs {run.min_gpu_memory_mb:,} MB GPU memory"
    if run.needs_gpu:
        return "no online worker can take it: needs a GPU"
    return "no online worker can take it"


def _retry_note(run: Run) -> str | None:
    if run.attempts:
        return f"re-try: attempt {run.attempts + 1} of up to {run.max_attempts}"
    return None


def _running_row(run: Run, found: liveness.Eta, workers: list[WorkerRecord], now: datetime) -> dict:
    worker = next((w for w in workers if w.current_run_id == run.id), None)
    return {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "priority": run.priority,
        "launched_by": run.launched_by,
        "worker_host": run.worker_host,
        "worker": worker.name if worker else None,
        "device": run.device,
        "set_aside_for": run.set_aside_for,
        **found.fields(),
        "finishes_at": _at(now, found.seconds),
    }


def _names(session: Session, run_ids: set[int | None]) -> dict[int, str]:
    ids = {run_id for run_id in run_ids if run_id is not None}
    if not ids:
        return {}
    return dict(session.execute(select(Run.id, Run.name).where(Run.id.in_(ids))).all())


def _unknown_note(unknown: list[int]) -> str:
    if not unknown:
        return ""
    runs = ", ".join(f"#{run_id}" for run_id in unknown)
    return f"Length unknown for run {runs}: the times after it leave it out."


def _iso(moment: datetime | None) -> str | None:
    return aware(moment).isoformat() if moment else None


def _at(now: datetime, seconds: float | None) -> str | None:
    if seconds is None or seconds == float("inf"):
        return None
    return (now + timedelta(seconds=seconds)).isoformat()
