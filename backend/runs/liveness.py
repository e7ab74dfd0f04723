"""Who is alive, and the one ETA of a running run, shown the same everywhere.

A worker says it is alive every STACKLAB_HEARTBEAT_SECONDS (its row in `workers`), and a
running run's link beats as often (`runs.heartbeat_at`); both are stamped by the database's
clock, and their age is read from it too. Two heartbeats without a word and the worker is
shown as *silent* (long before the upkeep gives its run up for dead, after
STACKLAB_STALE_AFTER_SECONDS), and its run's ETA says "unknown: worker silent".

A running run's ETA is computed here once (`etas`), from backend/runs/eta.py's `Timing`
(its own epochs' rate, else the measured, else the default rate of its kind), with the rates
measured on the devices of the workers that are heard: the queue panel, the runs table's row
and the run page all call it, so all three show the same number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from backend.runs import eta
from jobspec.scheduling import Lane
from jobspec.status import RunStatus
from store import clock
from store.runs.models import Run
from store.runs.schemas import RunRead
from store.settings import get_settings
from store.timeutil import aware
from store.workers import service as workers_service
from store.workers.models import WorkerRecord

SILENT_NOTE = "unknown: worker silent"


def silent_after() -> float:
    """Seconds without a heartbeat after which a worker (and its run) is shown silent."""
    return 2 * get_settings().heartbeat_seconds


def listed_within() -> float:
    """Workers listed: heard within the stale window (past it the upkeep gives their runs
    up), or three heartbeats when that is longer."""
    settings = get_settings()
    return max(settings.stale_after_seconds, 3 * settings.heartbeat_seconds + 5)


def age(now: datetime, moment: datetime | None) -> float | None:
    """Seconds from `moment` to `now` (both from the database's clock), never negative."""
    return None if moment is None else max((now - aware(moment)).total_seconds(), 0.0)


def worker_row(worker: WorkerRecord, now: datetime, run_names: dict[int, str]) -> dict:
    """A worker as the lists show it, with its last heartbeat's age and whether it is silent."""
    heard = age(now, worker.last_seen) or 0.0
    return {
        "name": worker.name,
        "host": worker.host,
        "device": worker.device,
        "lane": worker.lane,
        "lane_note": "" if worker.lane == Lane.TRAINING else Lane(worker.lane).label,
        "gpu_memory_mb": worker.gpu_memory_mb,
        "current_run_id": worker.current_run_id,
        "current_run_name": run_names.get(worker.current_run_id or 0),
        "last_seen": aware(worker.last_seen).isoformat(),
        "heard_seconds_ago": round(heard, 1),
        "silent": heard > silent_after(),
    }


def heard(workers: Iterable[WorkerRecord], now: datetime) -> list[WorkerRecord]:
    """The workers that are not silent."""
    limit = silent_after()
    return [w for w in workers if (age(now, w.last_seen) or 0.0) <= limit]


def run_heard_at(run: Run, workers: Sequence[WorkerRecord]) -> datetime | None:
    """A running run's last sign of life: its own beat or its worker's row, whichever is
    later (None: no beat yet and no worker on it)."""
    beat = run.heartbeat_at or run.started_at
    moments = [aware(beat)] if beat is not None else []
    moments += [aware(w.last_seen) for w in workers if w.current_run_id == run.id]
    return max(moments) if moments else None


def run_heard_ago(run: Run, workers: Sequence[WorkerRecord], now: datetime) -> float | None:
    """Seconds since a running run's last sign of life (None: none yet)."""
    return age(now, run_heard_at(run, workers))


@dataclass(frozen=True)
class Eta:
    """A running run's time left: seconds (None: unknown), where the figure comes from
    ("own epochs", "measured", "default", "worker"), and why it is unknown."""

    seconds: float | None
    source: str | None
    note: str | None = None
    heard_seconds_ago: float | None = None
    silent: bool = False
    heard_at: datetime | None = None

    def fields(self) -> dict:
        """The JSON every place shows (the same keys in the panel, the table and the run)."""
        return {
            "eta_seconds": self.seconds,
            "eta_source": self.source,
            "eta_note": self.note,
            "heard_seconds_ago": (
                None if self.heard_seconds_ago is None else round(self.heard_seconds_ago, 1)
            ),
            "worker_silent": self.silent,
            "heard_at": None if self.heard_at is None else self.heard_at.isoformat(),
        }

    def ran_to(self, now: datetime) -> datetime:
        """Where a running run's duration runs to: now, or its last sign of life once its
        worker is silent (a duration never ticks on for a worker that may be dead)."""
        return self.heard_at if self.silent and self.heard_at is not None else now


def etas(
    session: Session,
    runs: Sequence[Run],
    now: datetime,
    *,
    workers: Sequence[WorkerRecord] | None = None,
    timing: eta.Timing | None = None,
) -> dict[int, Eta]:
    """The ETA of each running run of `runs` (the others are left out): the one function
    every page calls. `workers` (online) and `timing` when the caller has them already."""
    running = [run for run in runs if run.status == RunStatus.RUNNING]
    if not running:
        return {}
    if workers is None:
        workers = workers_service.online(session, listed_within(), now=now)
    if timing is None:
        timing = eta.Timing(session, devices(workers, now), running)
    out = {}
    for run in running:
        at = run_heard_at(run, workers)
        ago = age(now, at)
        if ago is not None and ago > silent_after():
            out[run.id] = Eta(None, None, SILENT_NOTE, ago, True, at)
            continue
        started = aware(run.started_at) if run.started_at else now
        left, source = timing.remaining(run, max((now - started).total_seconds(), 0.0))
        if left is None:
            left, source = _reported(run, now)
        note = None if left is not None else "unknown: no plan or rate for this run"
        out[run.id] = Eta(left, source, note, ago, False, at)
    return out


def live(session: Session, runs: Sequence[Run], now: datetime | None = None) -> dict[int, dict]:
    """What a list shows of each running run of `runs`: its progress with the one ETA and
    its worker's liveness (the fields the table row, the panel and the run page show), for
    lists that are not the runs table (a study's arms, ...)."""
    running = [run for run in runs if run.status == RunStatus.RUNNING]
    if not running:
        return {}
    now = now or clock.now(session)
    found = etas(session, running, now)
    return {run.id: {**(run.progress or {}), **found[run.id].fields()} for run in running}


def duration(run: Run, now: datetime, found: Eta | None = None) -> float | None:
    """Seconds the run ran: to its end, or to now while it runs, or to its last sign of
    life once its worker is silent (the run page's and the table's one duration)."""
    if run.started_at is None:
        return None
    end = aware(run.finished_at) or (found.ran_to(now) if found else now)
    return max(0.0, (end - aware(run.started_at)).total_seconds())


def devices(workers: Sequence[WorkerRecord], now: datetime) -> set[str]:
    """The devices whose measured rates count: those of the workers that are heard."""
    return {w.device for w in heard(workers, now)}


def _reported(run: Run, now: datetime) -> tuple[float | None, str | None]:
    """The worker's own figure (its progress), aged by the time since it beat."""
    reported = (run.progress or {}).get("eta_seconds")
    if not isinstance(reported, int | float):
        return None, None
    since = age(now, run.heartbeat_at) or 0.0
    return max(float(reported) - since, 0.0), "worker"


def read(
    session: Session, run: Run, found: Eta | None = None, now: datetime | None = None
) -> RunRead:
    """The run as GET /api/runs/{id} shows it: a running run with its ETA and liveness
    (`found` and `now`: its Eta and the database's time when the caller has them)."""
    item = RunRead.model_validate(run)
    now = now or clock.now(session)
    if run.status == RunStatus.RUNNING:
        found = found or etas(session, [run], now).get(run.id)
        if found is not None:
            for key, value in found.fields().items():
                setattr(item, key, value)
            item.heard_at = found.heard_at
    item.duration_seconds = duration(run, now, found)
    return item
