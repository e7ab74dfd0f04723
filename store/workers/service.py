"""Workers report in; the queue panel and the reaper read it. last_seen is stamped and
judged by the database's clock (store.clock), whatever the worker's own clock says."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobspec.scheduling import Lane
from store import clock
from store.workers.models import WorkerRecord


def report(
    *,
    session: Session,
    name: str,
    host: str,
    device: str,
    current_run_id: int | None,
    idle_only: bool = False,
    lane: Lane = Lane.TRAINING,
    gpu_memory_mb: int | None = None,
) -> None:
    """Upsert this worker's row: alive now, on this run (or idle), its lane and GPU memory.

    idle_only: only say "alive", keeping whatever run the worker's heartbeat set.
    """
    record = session.get(WorkerRecord, name)
    if record is None:
        record = WorkerRecord(name=name, host=host, device=device)
        session.add(record)
    record.last_seen, record.device = clock.now(session), device
    record.lane, record.gpu_memory_mb = lane, gpu_memory_mb
    if not idle_only:
        record.current_run_id = current_run_id


def online(
    session: Session, within_seconds: float, *, now: datetime | None = None
) -> list[WorkerRecord]:
    """Workers seen in the last `within_seconds` (by the database's clock; `now`: a time
    the caller read from it)."""
    cutoff = (now or clock.now(session)) - timedelta(seconds=within_seconds)
    return list(
        session.scalars(
            select(WorkerRecord).where(WorkerRecord.last_seen >= cutoff).order_by(WorkerRecord.name)
        )
    )
