"""What /metrics reads from the database at scrape time, each a bounded query on an index:
the run counts by state and kind, the queue, the workers' liveness (backend/runs/liveness.py,
the pages' own rule), recent epochs' times and rates, imports, and webhook deliveries.

Times that decide anything (the queue's oldest wait, a worker's silence) are the
database's (store.clock), read once per scrape.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.runs import liveness
from jobspec import kinds
from jobspec.status import ImportState, RunStatus
from store import clock
from store.datasets.models import DatasetImport
from store.notify.models import WebhookDelivery
from store.notify.vocabulary import DeliveryState
from store.runs.models import MetricSummary, Run
from store.workers import service as workers_service

RECENT_RUNS = 30  # runs whose last epochs the epoch gauges summarise, newest first
RECENT_WINDOW = 5000  # ... found among the newest this many run ids (a bounded walk)
RECENT_IMPORTS = 50
EPOCH_SECONDS = "epoch_seconds"
IMAGES_PER_SEC = "images_per_sec"
Labels = tuple[str, str, str]  # kind, model, device


@dataclass
class Snapshot:
    """Everything one scrape reports from the store."""

    runs: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, kind) -> n
    queue_depth: int = 0
    oldest_wait: float = 0.0  # seconds the longest-queued run has waited
    workers: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, lane) -> n
    # (kind, model, device) -> median over recent runs' last epochs
    epoch_seconds: dict[Labels, float] = field(default_factory=dict)
    images_per_second: dict[Labels, float] = field(default_factory=dict)
    imports: dict[str, int] = field(default_factory=dict)  # state -> n
    import_seconds: dict[str, float] = field(default_factory=dict)  # quantile -> seconds
    deliveries: dict[str, int] = field(default_factory=dict)  # state -> n


def read(session: Session) -> Snapshot:
    """One scrape's snapshot (a handful of indexed queries)."""
    now = clock.now(session)
    snap = Snapshot()
    snap.runs = run_counts(session)
    snap.queue_depth, snap.oldest_wait = queue(session, now)
    snap.workers = workers(session, now)
    snap.epoch_seconds, snap.images_per_second = epochs(session)
    snap.imports, snap.import_seconds = imports(session)
    snap.deliveries = deliveries(session)
    return snap


def run_counts(session: Session) -> dict[tuple[str, str], int]:
    """Runs by (state, kind), every state of every kind seen (0 where none)."""
    rows = session.execute(
        select(Run.status, Run.kind, func.count()).group_by(Run.status, Run.kind)
    ).all()
    found = {(RunStatus(status).value, kind): int(n) for status, kind, n in rows}
    for kind in {kind for _, kind in found} | set(kinds.names()):
        for status in RunStatus:
            found.setdefault((status.value, kind), 0)
    return found


def queue(session: Session, now: datetime) -> tuple[int, float]:
    """Queued runs and how long the oldest has waited (the scheduler's index)."""
    depth, oldest = session.execute(
        select(func.count(), func.min(Run.queued_at)).where(Run.status == RunStatus.QUEUED)
    ).one()
    return int(depth), liveness.age(now, oldest) or 0.0


def workers(session: Session, now: datetime) -> dict[tuple[str, str], int]:
    """Workers listed (heard within the stale window) by (online|busy|silent, lane): online
    = heard within two heartbeats, busy = online and on a run, silent = listed, not heard."""
    out: dict[tuple[str, str], int] = {}
    listed = workers_service.online(session, liveness.listed_within(), now=now)
    heard = {worker.name for worker in liveness.heard(listed, now)}
    for worker in listed:
        lane = str(getattr(worker.lane, "value", worker.lane))
        states = ["online", "busy"] if worker.current_run_id is not None else ["online"]
        for state in states if worker.name in heard else ["silent"]:
            out[(state, lane)] = out.get((state, lane), 0) + 1
    return out


def epochs(session: Session) -> tuple[dict[Labels, float], dict[Labels, float]]:
    """Median epoch seconds and images/s by (kind, model, device), over the last epoch of
    each stage of the newest RECENT_RUNS runs that logged one (a last epoch is warm: the
    first, which traces and compiles, only counts when it is the only one)."""
    run_ids = _recently_measured(session)
    if not run_ids:
        return {}, {}
    runs = {
        row.id: row
        for row in session.execute(
            select(Run.id, Run.kind, Run.params, Run.device).where(Run.id.in_(run_ids))
        )
    }
    rows = session.execute(
        select(MetricSummary.run_id, MetricSummary.key, MetricSummary.last_value).where(
            MetricSummary.run_id.in_(run_ids),
            MetricSummary.key.like(f"%/{IMAGES_PER_SEC}")
            | MetricSummary.key.like(f"%/{EPOCH_SECONDS}"),
        )
    ).all()
    found: dict[str, dict[Labels, list[float]]] = {EPOCH_SECONDS: {}, IMAGES_PER_SEC: {}}
    for run_id, key, value in rows:
        stage, name = key.rsplit("/", 1)
        run = runs.get(run_id)
        model = _model(run.kind, run.params, stage) if run else None
        if run is None or model is None or not value or value <= 0:
            continue
        found[name].setdefault((run.kind, model, run.device or "unknown"), []).append(value)
    return _medians(found[EPOCH_SECONDS]), _medians(found[IMAGES_PER_SEC])


def _recently_measured(session: Session) -> list[int]:
    """The newest RECENT_RUNS runs with an images/s summary, found walking the summaries'
    primary key down from the newest run ids (at most RECENT_WINDOW of them)."""
    newest = session.scalar(select(func.max(Run.id))) or 0
    return list(
        session.scalars(
            select(MetricSummary.run_id)
            .where(
                MetricSummary.run_id > newest - RECENT_WINDOW,
                MetricSummary.key.like(f"%/{IMAGES_PER_SEC}"),
            )
            .group_by(MetricSummary.run_id)
            .order_by(MetricSummary.run_id.desc())
            .limit(RECENT_RUNS)
        )
    )


def _medians(by: dict[Labels, list[float]]) -> dict[Labels, float]:
    return {labels: statistics.median(values) for labels, values in by.items()}


def _model(kind: str, params: dict, stage: str) -> str | None:
    """What the kind measures a stage's rate per (a tune's trial-3 is its trial stage)."""
    job = kinds.find(kind)
    config = job.config(params) if job else None
    if job is None or config is None:
        return None
    family = kinds.TRIAL_STAGE if stage.startswith(f"{kinds.TRIAL_STAGE}-") else stage
    return job.rate_model(config, family)


def imports(session: Session) -> tuple[dict[str, int], dict[str, float]]:
    """Imports by state (finished ones are kept a week), and the median, 90th percentile
    and longest of the newest RECENT_IMPORTS finished imports' durations."""
    counts = {state.value: 0 for state in ImportState}
    for state, n in session.execute(
        select(DatasetImport.state, func.count()).group_by(DatasetImport.state)
    ):
        counts[ImportState(state).value] = int(n)
    rows = session.execute(
        select(DatasetImport.started_at, DatasetImport.finished_at)
        .where(
            DatasetImport.state.in_(ImportState.finished()),
            DatasetImport.started_at.is_not(None),
            DatasetImport.finished_at.is_not(None),
        )
        .order_by(DatasetImport.id.desc())
        .limit(RECENT_IMPORTS)
    ).all()
    seconds = sorted(liveness.age(clock.at(end), start) or 0.0 for start, end in rows)
    if not seconds:
        return counts, {}
    return counts, {
        "0.5": statistics.median(seconds),
        "0.9": seconds[min(len(seconds) - 1, int(0.9 * len(seconds)))],
        "1": seconds[-1],
    }


def deliveries(session: Session) -> dict[str, int]:
    """Webhook deliveries by state (kept a week)."""
    counts = {state.value: 0 for state in DeliveryState}
    for state, n in session.execute(
        select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
    ):
        counts[DeliveryState(state).value] = int(n)
    return counts
