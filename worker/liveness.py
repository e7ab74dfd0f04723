"""Heartbeats while a run trains, and reaping of runs whose worker died."""

from __future__ import annotations

import logging
import platform
import threading
import time

from backend.config import get_settings
from backend.db import session_scope
from backend.runs import service as runs_service
from backend.workers import service as workers_service

log = logging.getLogger(__name__)


def reap() -> list[int]:
    """Mark failed the running runs nobody has beaten for stale_after_seconds."""
    with session_scope() as session:
        stale = runs_service.reap_stale(
            session=session, stale_after=get_settings().stale_after_seconds
        )
    if stale:
        log.warning("marked runs %s failed: their worker stopped responding", stale)
    return stale


def start_reaper(*, worker: str, device: str) -> threading.Thread:
    """In a worker's pool child: report in and reap dead workers' runs, even when idle."""

    def loop() -> None:
        interval = get_settings().heartbeat_seconds
        while True:
            try:
                with session_scope() as session:
                    workers_service.report(
                        session=session,
                        name=worker,
                        host=platform.node(),
                        device=device,
                        current_run_id=None,
                        idle_only=True,
                    )
                reap()
            except Exception:  # the database may be restarting; try again next round
                log.exception("worker liveness round failed")
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="stacklab-reaper", daemon=True)
    thread.start()
    return thread


class Heartbeat:
    """A daemon thread that says 'alive, on run N' every heartbeat_seconds and reaps others."""

    def __init__(self, run_id: int, *, worker: str, device: str):
        self.run_id, self.worker, self.device = run_id, worker, device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._report(current=None)

    def _loop(self) -> None:
        interval = get_settings().heartbeat_seconds
        while not self._stop.wait(interval):
            try:
                with session_scope() as session:
                    runs_service.beat(session=session, run_id=self.run_id)
                self._report(current=self.run_id)
                reap()
            except Exception:  # a missed beat is not fatal; the next one may get through
                log.exception("heartbeat of run %s failed", self.run_id)

    def _report(self, current: int | None) -> None:
        with session_scope() as session:
            workers_service.report(
                session=session,
                name=self.worker,
                host=platform.node(),
                device=self.device,
                current_run_id=current,
            )
