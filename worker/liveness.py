"""A worker child's background duties: report in, reap dead workers' runs, re-send lost
messages, and stop gracefully when told to (SIGTERM: `docker stop`, a redeploy, Ctrl-C).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

from jobspec.scheduling import Lane
from store import queue
from store.db import session_scope
from store.runs.upkeep import Upkeep
from store.settings import get_settings
from store.workers import service as workers_service

log = logging.getLogger(__name__)

# Set when this process was told to stop: the running job hands its run back and the
# process takes no new one.
DRAINING = threading.Event()
# The run this process is on (its own run is never reaped by itself).
current_run: int | None = None
# In a worker's main process: its children were told to stop (forward_stop_to_children).
_forwarded = False


def own_runs() -> frozenset[int]:
    return frozenset() if current_run is None else frozenset({current_run})


def start_upkeep(
    *, worker: str, device: str, lane: Lane = Lane.TRAINING, gpu_memory_mb: int | None = None
) -> threading.Thread:
    """In a worker's pool child: report in (with its lane and GPU memory, which the
    scheduler's preemption reads), reap, set aside and re-send, even when idle."""
    settings = get_settings()
    upkeep = Upkeep(
        session_scope=session_scope,
        send=queue.enqueue,
        waiting=queue.waiting,
        settings=settings,
        own_runs=own_runs,
    )

    def loop() -> None:
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
                        lane=lane,
                        gpu_memory_mb=gpu_memory_mb,
                    )
                upkeep.round()
            except Exception as err:  # the store may be restarting; try again next round
                upkeep.store_down()
                log.warning("worker upkeep round failed: %s", err)
            if DRAINING.is_set() and current_run is None:
                return  # this process is stopping and has nothing left to look after
            time.sleep(settings.heartbeat_seconds)

    thread = threading.Thread(target=loop, name="stacklab-upkeep", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def hand_back_on_sigterm() -> Iterator[None]:
    """While a job runs: SIGTERM makes it stop at its next batch and hand its run back,
    instead of killing the process with the run in it. Between jobs the pool's own
    handler (exit at once) is in force; billiard installs it after worker_process_init,
    which is why this is set per job."""

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        if not DRAINING.is_set():
            log.warning("told to stop: run %s stops at its next batch and goes back", current_run)
        DRAINING.set()

    if threading.current_thread() is not threading.main_thread():  # a threads pool
        yield
        return
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def refuse_new_work() -> None:
    """A stopping child was handed a task: ask the main process for a warm shutdown (a
    SIGTERM that reached only this child means the operator wants the worker gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(os.getppid(), signal.SIGTERM)


def forward_stop_to_children() -> None:
    """In the worker's main process: pass a shutdown on to the pool children (docker stop
    signals only the main process). Once: a later shutdown signal (a child refusing a
    task it was handed while stopping asks for one) would reach a child outside its job,
    where the pool's handler kills it mid-refusal and the task is lost with it."""
    from billiard.process import active_children
    from celery.worker import state

    global _forwarded
    if _forwarded or not state.active_requests:  # idle children leave with the pool
        return
    _forwarded = True
    for child in active_children():
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.kill(child.pid, signal.SIGTERM)
