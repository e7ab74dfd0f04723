"""`stacklab serve`: the web app, training worker(s) and one CPU lane worker together, on
whatever the settings say.

It supervises them: a worker (or the web app) that exits on its own (killed for memory, a
crash) is started again, after a back-off that doubles while it keeps dying young, so one
bad upload or one bug cannot take the whole service down; a web app that cannot have its
port (someone else took it) ends `serve` instead. Ctrl-C or SIGTERM stops them all, giving
the workers STACKLAB_WORKER_STOP_GRACE_SECONDS to hand their runs back. One serve per data
directory and per port (cli/instance.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import typer

from cli import instance
from cli.errors import CliError
from cli.processes import CPU_LANE_NAME, lane_env, lane_worker, web_command, worker_command
from jobspec.scheduling import Lane
from store.settings import Settings
from worker import device

POLL_SECONDS = 0.5
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# A process that ran this long before exiting was healthy: its next restart comes quickly.
STABLE_AFTER_SECONDS = 60.0


@dataclass
class Supervised:
    """One process `serve` keeps running, and how its restarts go."""

    name: str
    command: list[str]
    env: dict[str, str] | None = None  # set on top of ours (a GPU worker's device)
    # Asked when it exited: a reason it cannot run again (then serve stops), or None.
    blocked: Callable[[], str | None] | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0  # exits in a row, each soon after its start
    restart_at: float | None = None

    def start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env} if self.env else None
        self.proc = subprocess.Popen(self.command, env=env, preexec_fn=_die_with_parent())
        self.started_at, self.restart_at = time.monotonic(), None
        return self.proc

    def tend(self, now: float) -> None:
        """Notice an exit and schedule the restart; start again when its back-off is over."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                proc = self.start()
                typer.echo(f"{self.name} started again (pid {proc.pid})", err=True)
            return
        code = self.proc.poll() if self.proc else None
        if code is None:
            return
        why = self.blocked() if self.blocked else None
        if why:
            raise CliError(f"{self.name} exited with code {code} and cannot start again: {why}")
        lived = now - self.started_at
        self.quick_deaths = 0 if lived >= STABLE_AFTER_SECONDS else self.quick_deaths + 1
        delay = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** max(0, self.quick_deaths - 1))
        typer.echo(
            f"{self.name} exited with code {code}; restarting it in {delay:g} s "
            f"(it ran {lived:.0f} s)",
            err=True,
        )
        self.restart_at = now + delay


def worker_layout(
    gpus: str | None, workers: int, detect: Callable[[], list[str]] = device.detect_gpus
) -> tuple[list[tuple[str, dict[str, str]]], str | None]:
    """(name, environment) of each worker to start, and a line to say about it.

    gpus None: `workers` unpinned workers (worker1, worker2...). Otherwise one worker per
    chosen GPU, pinned with CUDA_VISIBLE_DEVICES and named gpuN; no GPU at all: one CPU one.
    """
    if gpus is None:
        return [(f"worker{i + 1}", {}) for i in range(workers)], None
    detected = detect()
    chosen = device.choose_gpus(gpus, detected)
    if chosen:
        names = ", ".join(f"gpu{g}" for g in chosen)
        return [(f"gpu{g}", device.gpu_env(g)) for g in chosen], f"workers: {names}"
    why = "no GPU found (nvidia-smi -L lists none)" if not detected else "--gpus none"
    return [("cpu", device.gpu_env(None))], f"{why}: starting one CPU worker"


def serve(
    host: str, port: int, workers: int, gpus: str | None = None, *, cpu_lane: bool = True
) -> None:
    """Start uvicorn, the training workers (`workers` of them, or one per GPU of `gpus`) and
    one CPU lane worker (imports, "evaluate now": never behind training), restart any that
    dies; stop all on Ctrl-C. Refuses a data directory or a port that another serve (or
    anything else, for the port) holds."""
    from store.settings import get_settings

    settings = get_settings()
    with instance.data_dir_claimed(settings.data_dir):
        instance.check_port(host, port)  # before anything starts: nothing to stop on refusal
        services = _worker_services(gpus, workers, settings.queue)
        if cpu_lane:
            services.append(cpu_lane_service(settings))
        _prepare_store()
        typer.echo(addresses(settings))
        if "allowed_hosts" not in settings.model_fields_set:  # the web answers to its own names
            os.environ["STACKLAB_ALLOWED_HOSTS"] = serve_allowed_hosts(host)
        typer.echo(
            f"host names: {os.environ.get('STACKLAB_ALLOWED_HOSTS', settings.allowed_hosts)} "
            "(others get 400; set STACKLAB_ALLOWED_HOSTS for more)"
        )
        web = Supervised(
            "web", web_command(host, port), blocked=lambda: instance.port_problem(host, port)
        )
        supervise([*services, web], f"stacklab is up: http://{host}:{port}  (Ctrl-C stops it)")


def addresses(settings: Settings) -> str:
    """The database and the queue in force, passwords masked (the output lands in logs)."""
    from kombu.utils.url import maybe_sanitize_url
    from sqlalchemy.engine import make_url

    database = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    queue = "embedded SQLite queue (this machine only: REDIS_URL to share it)"
    if not settings.embedded_broker:
        queue = maybe_sanitize_url(settings.celery_broker_url)
    return f"database: {database}\nqueue:    {queue}"


def _prepare_store() -> None:
    """Schema, built-in data sets and the queue, before any worker or web app starts."""
    from store import queue as job_queue
    from store.db import upgrade_schema
    from worker.datasets import BUILTIN, ensure_builtin

    upgrade_schema()
    for name in BUILTIN:
        ensure_builtin(name)
    job_queue.declare()  # before the workers: two creating it at once would crash one


def serve_workers(gpus: str) -> None:
    """Only the workers, one per GPU of `gpus` (a container reserving all of a box's GPUs)."""
    from store import queue as job_queue
    from store.settings import get_settings

    settings = get_settings()
    typer.echo(addresses(settings))
    services = _worker_services(gpus, 1, settings.queue)
    job_queue.declare()
    up = f"{len(services)} training worker(s) on queue {settings.queue} (Ctrl-C stops)"
    supervise(services, up)


def _worker_services(gpus: str | None, workers: int, queue: str) -> list[Supervised]:
    """The training workers of `worker_layout`, not started yet; says what it chose for
    --gpus."""
    layout, said = worker_layout(gpus, workers)
    if said:
        typer.echo(said)
    training = lane_env(Lane.TRAINING)
    return [
        Supervised(name, worker_command(queue, name), env=training | env) for name, env in layout
    ]


def cpu_lane_service(settings: Settings) -> Supervised:
    """The CPU lane's worker, not started yet: data set imports and "evaluate now" on its
    own queue, so they never wait behind training; it imports no TensorFlow and sees no
    GPU, so it starts in a moment and takes little memory."""
    worker = lane_worker(Lane.CPU, settings=settings)
    return Supervised(CPU_LANE_NAME, worker.command, env=worker.env)


def supervise(services: list[Supervised], up: str, grace: float | None = None) -> None:
    """Start them, restart any that exits, stop all on Ctrl-C or SIGTERM, giving each
    `grace` seconds (STACKLAB_WORKER_STOP_GRACE_SECONDS) to stop by itself."""
    if grace is None:
        from store.settings import get_settings

        grace = get_settings().worker_stop_grace_seconds
    # A service manager stops us with SIGTERM: take the web app and workers down too. And
    # Ctrl-C, whatever SIGINT's disposition was inherited (a process started with SIGINT
    # ignored, as a shell's background job is, would not stop on it, while its web app and
    # workers, which set their own handlers, would: serve restarted them as crashed).
    # Both are put back on the way out: a caller in the same process (a test, an embedding
    # program) finds SIGINT and SIGTERM as they were, not raising KeyboardInterrupt forever.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for service in services:
            service.start()
        typer.echo(up)
        while True:
            time.sleep(POLL_SECONDS)
            now = time.monotonic()
            for service in services:
                service.tend(now)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            _stop(services, grace)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _stop(services: list[Supervised], grace: float) -> None:
    """SIGTERM every running process, wait up to `grace` seconds for all (a worker stops at
    its job's next batch and hands the run back), then kill what is left, children too.
    Another Ctrl-C or SIGTERM meanwhile kills them at once."""
    running = [(s.name, s.proc) for s in services if s.proc is not None and s.proc.poll() is None]
    if not running:
        return
    for _name, proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    typer.echo(
        f"stopping: waiting up to {grace:g} s for the workers to hand their runs back "
        "(STACKLAB_WORKER_STOP_GRACE_SECONDS; Ctrl-C again kills them now)",
        err=True,
    )
    deadline, why = time.monotonic() + grace, f"did not stop within {grace:g} s"
    try:
        for _name, proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        why = "told again to stop"
    for name, proc in running:
        if proc.poll() is None:
            for pid in [proc.pid, *descendants(proc.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            typer.echo(f"{name} {why}: killed", err=True)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (a worker's pool child and what it started), from /proc;
    none where /proc is not there."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """For Popen's preexec_fn on Linux: the child gets SIGTERM when serve dies (even by
    kill -9), so no worker outlives its supervisor and goes on taking jobs unseen."""
    if not sys.platform.startswith("linux"):
        return None
    parent, libc = os.getpid(), ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # serve died before the line above took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


WILDCARD_BINDS = {"0.0.0.0", "::", "[::]", ""}


def serve_allowed_hosts(bind_host: str) -> str:
    """A STACKLAB_ALLOWED_HOSTS for `stacklab serve --host X`: loopback plus X.

    A wildcard bind (0.0.0.0, ::) answers on every address: loopback plus this machine's
    host name, full name and addresses; other names (a DNS alias, a proxy's name) need
    the variable set, as the README says.
    """
    hosts = Settings.model_fields["allowed_hosts"].default.split(",")
    names = _this_machine() if bind_host in WILDCARD_BINDS else [bind_host]
    for name in names:
        host = f"[{name}]" if ":" in name and not name.startswith("[") else name
        if host.lower() not in hosts:
            hosts.append(host.lower())
    return ",".join(hosts)


def _this_machine() -> list[str]:
    """The machine's own names and addresses: what a wildcard bind is reached by on a LAN."""
    names = [socket.gethostname(), socket.getfqdn()]
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:  # no resolvable name: the names alone
        infos = []
    return [*names, *(str(info[4][0]) for info in infos)]
