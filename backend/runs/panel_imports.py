"""Data set imports in the queue panel: they run on the CPU lane (never behind training), so
they get their own positions and times, on the CPU-lane workers that are heard.

An import's length is its upload's size at DEFAULT_MB_PER_SECOND (the store keeps no
upload size once an import is done, so nothing is measured yet: every estimate says
"default"); a download (no upload) has no known size and says "length unknown". Imports
start in the order they were made (oldest first) on whichever CPU-lane worker frees first.
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from backend.formatting import fmt_duration
from backend.runs import liveness
from jobspec.scheduling import Lane
from jobspec.status import ImportState
from store.datasets import service as datasets_service
from store.datasets.models import DatasetImport
from store.timeutil import aware
from store.workers import service as workers_service
from store.workers.models import WorkerRecord

DEFAULT_MB_PER_SECOND = 2.0  # reading, decoding and storing images, on one CPU core
MB = 1_000_000
NEXT = 0.5  # a planned start this close to now is "next to start"


def rows(session: Session, workers: list[WorkerRecord], now: datetime) -> list[dict]:
    """Imports queued or running, running first, then in the order they will start."""
    lane = [w for w in liveness.heard(workers, now) if w.lane == Lane.CPU]
    pending = datasets_service.pending_imports(session)
    free: list[float] = []
    out = []
    for found, size in pending:
        if found.state != ImportState.RUNNING:
            continue
        length = _length(size)
        elapsed = liveness.age(now, found.started_at) or 0.0
        left = None if length is None else max(length - elapsed, 0.0)
        heapq.heappush(free, left or 0.0)
        out.append(_row(found, size, "importing now", None, 0.0, left, now))
    free += [0.0] * max(len(lane) - len(free), 0)
    heapq.heapify(free)
    position = 0
    for found, size in pending:
        if found.state != ImportState.QUEUED:
            continue
        position += 1
        length = _length(size)
        if not lane:
            out.append(_row(found, size, "no CPU-lane worker online", position, None, None, now))
            continue
        start = heapq.heappop(free)
        finish = start + (length or 0.0)
        heapq.heappush(free, finish)
        why = "next to start" if start <= NEXT else "waits for a free CPU-lane worker"
        out.append(_row(found, size, why, position, start, None if length is None else finish, now))
    return out


def row_of(session: Session, import_id: int, now: datetime) -> dict | None:
    """One import's row of the panel (its place, reason, times and words): what the data
    sets page says of it, so the two never disagree (None: not queued nor running)."""
    workers = workers_service.online(session, liveness.listed_within(), now=now)
    return next((row for row in rows(session, workers, now) if row["id"] == import_id), None)


def words(row: dict) -> str:
    """An import's row in words, the one sentence the panel and the data sets page show:
    "queued: 2. in line on the CPU lane · waits for a free CPU-lane worker · done in 9s"."""
    if row["state"] == ImportState.RUNNING:
        text = "importing on a CPU-lane worker"
    elif row["place"] is None:
        text = f"queued: {row['waiting']}"
    else:
        text = f"queued: {row['place']}. in line on the CPU lane · {row['waiting']}"
        if row["starts_in_seconds"] is not None and row["starts_in_seconds"] > NEXT:
            text += f" · starts in {fmt_duration(row['starts_in_seconds'])}"
    if row["finishes_in_seconds"] is not None:
        text += f" · done in {fmt_duration(row['finishes_in_seconds'])}"
    elif row["estimated_seconds"] is None:
        text += " · length unknown"
    return text


def _length(size: int | None) -> float | None:
    return None if size is None else size / (DEFAULT_MB_PER_SECOND * MB)


def _row(
    found: DatasetImport,
    size: int | None,
    waiting: str,
    place: int | None,
    starts_in: float | None,
    finishes_in: float | None,
    now: datetime,
) -> dict:
    row = {
        "id": found.id,
        "name": found.name,
        "file_name": found.file_name,
        "state": found.state,
        "lane": Lane.CPU,
        "size_bytes": size,
        "place": place,
        "waiting": waiting,
        "estimated_seconds": _length(size),
        "estimate_source": None if size is None else "default",
        "rate_mb_per_second": DEFAULT_MB_PER_SECOND,
        "starts_in_seconds": starts_in,
        "finishes_in_seconds": finishes_in,
        "finishes_at": None
        if finishes_in is None
        else (now + timedelta(seconds=finishes_in)).isoformat(),
        "created_at": aware(found.created_at).isoformat(),
    }
    return {**row, "words": words(row)}
