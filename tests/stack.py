"""The stack the tests start: the web app under uvicorn, Celery workers, PostgreSQL databases.

Test-only scaffolding (also used by `bench/` and `docs/make_screenshots.py`), kept out of
the installed package: a web app on a free port that answers, worker processes with their
logs, a throw-away database on the test server (`STACKLAB_TEST_PG`), short test timings,
and an environment swapped in and out. The command lines come from `cli.processes`, the
same ones `stacklab serve` runs; the web itself always runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cli.processes import web_command, worker_command
from jobspec.scheduling import Lane
from worker import system_metrics
from worker.device import LANE_VARIABLE, NAME_VARIABLE

REPO_ROOT = Path(__file__).resolve().parents[1]

PG_ADMIN_URL = os.environ.get(
    "STACKLAB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("STACKLAB_TEST_REDIS", "redis://127.0.0.1:6379/0")

# Every wait in the tests is an upper bound for an event, never a measure: on a machine
# slower than ours, stretch them all with one factor (STACKLAB_TEST_TIMEOUT_SCALE=3), and
# the windows below that decide a worker or an import is lost with them.
TIMEOUT_SCALE = float(os.environ.get("STACKLAB_TEST_TIMEOUT_SCALE") or 1)

# Short intervals so a dead worker is noticed in seconds, not the default half-minute.
FAST = {
    "STACKLAB_HEARTBEAT_SECONDS": "0.5",
    "STACKLAB_STALE_AFTER_SECONDS": f"{4 * TIMEOUT_SCALE:g}",
    "STACKLAB_PROGRESS_INTERVAL_SECONDS": "0.2",
    "STACKLAB_EMBEDDED_POLL_SECONDS": "0.1",
    "STACKLAB_RESEND_AFTER_SECONDS": f"{3 * TIMEOUT_SCALE:g}",
    # Small import budgets, so hostile uploads hit them in a second or two.
    "STACKLAB_IMPORT_MEMORY_MB": "768",
    "STACKLAB_IMPORT_TIMEOUT_SECONDS": f"{5 * TIMEOUT_SCALE:g}",
    # A pretrain's probe stage reads a small sample (tests/ml/test_probe.py checks its numbers)
    "STACKLAB_LEARNED_MAX_IMAGES": "120",
    "STACKLAB_LEARNED_PCA_POINTS": "60",
}

# What stack_env swaps: where the data lives, which database, broker and queue, the token.
STACK_VARS = (
    "STACKLAB_DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "STACKLAB_QUEUE",
    "STACKLAB_CPU_QUEUE",
    "STACKLAB_TOKEN",
    *FAST,
)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WaitTimeout(AssertionError):
    """wait_for gave up; an AssertionError, so a test fails rather than errors."""


def scaled(seconds: float) -> float:
    """A timeout in seconds, stretched by STACKLAB_TEST_TIMEOUT_SCALE."""
    return seconds * TIMEOUT_SCALE


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str, every: float = 0.2):
    """Poll until predicate() is truthy; returns its value or fails saying what was awaited.

    `timeout` is a generous upper bound (scaled by STACKLAB_TEST_TIMEOUT_SCALE).
    """
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Web:
    """A running web app: its base URL and its uvicorn process."""

    url: str
    proc: subprocess.Popen

    def answers(self) -> bool:
        """The health check answers 200; an exited process fails at once."""
        import httpx

        if self.proc.poll() is not None:
            raise RuntimeError(f"the web app exited with code {self.proc.returncode}")
        try:
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Web:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_web(
    env: Mapping[str, str],
    *,
    log: Path | None = None,
    log_level: str | None = None,
    timeout: float = 60,
) -> Web:
    """uvicorn on a free loopback port with this environment, once it answers.

    Output goes to `log` (a file) when given, else to this process's stdout and stderr.
    """
    port = free_port()
    out = log.open("w") if log else None
    proc = subprocess.Popen(
        web_command("127.0.0.1", port, log_level=log_level),
        cwd=REPO_ROOT,
        env=dict(env),
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
    )
    if out:
        out.close()  # the child holds its own copy
    web = Web(f"http://127.0.0.1:{port}", proc)
    try:
        wait_for(web.answers, timeout=timeout, what="the web app to answer", every=0.1)
    except BaseException:
        web.stop()
        raise
    return web


class Workers:
    """Celery worker processes started with one environment, each logging to a file."""

    def __init__(self, env: Mapping[str, str], log_dir: Path):
        self.env = dict(env)
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, lane: Lane = Lane.TRAINING) -> subprocess.Popen:
        """A prefork worker with one child, on its lane's queue (the environment's
        STACKLAB_QUEUE, or the CPU lane's beside it); logs to <name>.log."""
        queue = self.env["STACKLAB_QUEUE"]
        env = {**self.env, LANE_VARIABLE: lane.value}
        if lane is Lane.CPU:
            queue = self.env.get("STACKLAB_CPU_QUEUE") or f"{queue}-cpu"
            env |= {"CUDA_VISIBLE_DEVICES": "", NAME_VARIABLE: name}
        with (self.log_dir / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(
                worker_command(queue, name),
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so it can be killed whole
            )
        self.procs.append(proc)
        return proc

    def stop_all(self, timeout: float = 20) -> None:
        """SIGTERM every worker's group, SIGKILL what is still there after `timeout`."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def pool_children(pid: int) -> list[int]:
    """The child processes of a worker's main process (its pool), from /proc (Linux)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def rss_mb(pid: int) -> float:
    """A process's resident memory in MiB (VmRSS in /proc); 0.0 when it is gone."""
    return system_metrics.rss_mb(pid) or 0.0


def create_pg_database() -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database; returns its URL and a function that drops it."""
    import sqlalchemy as sa

    name = f"stacklab_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop_now() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    def drop() -> None:
        # DROP DATABASE makes PostgreSQL checkpoint (seconds on a busy machine): off the
        # fixture's teardown, in one background thread the process waits for at exit.
        _DROPS.submit(drop_now)

    return url, drop


# Databases being dropped, one at a time, in the background (create_pg_database).
_DROPS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-database")
atexit.register(_DROPS.shutdown, wait=True)


def reset_process_state() -> None:
    """Forget cached settings, engine and Celery client, so a new environment takes."""
    from store import queue
    from store.db import reset_caches

    reset_caches()
    queue.client.cache_clear()


@contextmanager
def stack_env(env: Mapping[str, str]) -> Iterator[None]:
    """Run with exactly these stacklab variables set, then restore the old ones: every
    variable of STACK_VARS and of `env` (one `env` names beyond STACK_VARS is put back too,
    never left behind for the later tests of this process)."""
    saved = {key: os.environ.get(key) for key in {*STACK_VARS, *env}}
    for key in STACK_VARS:
        os.environ.pop(key, None)
    os.environ.update(env)
    reset_process_state()
    try:
        yield
    finally:
        reset_process_state()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


T = TypeVar("T")


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """`asyncio.run(make())` in a thread of its own, whatever this thread runs: a browser
    module earlier in the same test process leaves Playwright's event loop running in the
    main thread, where asyncio.run and anyio.run refuse to start another."""

    async def main() -> T:
        return await make()

    with ThreadPoolExecutor(1, thread_name_prefix="run-async") as pool:
        return pool.submit(asyncio.run, main()).result()
