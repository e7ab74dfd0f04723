"""A real stack for queue tests: a database, a broker and Celery worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import REPO_ROOT
from worker.cli.serve import worker_command

PG_ADMIN_URL = os.environ.get(
    "STACKLAB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("STACKLAB_TEST_REDIS", "redis://127.0.0.1:6379/0")

# Short intervals so a dead worker is noticed in seconds, not the default half-minute.
FAST = {
    "STACKLAB_HEARTBEAT_SECONDS": "0.5",
    "STACKLAB_STALE_AFTER_SECONDS": "4",
    "STACKLAB_PROGRESS_INTERVAL_SECONDS": "0.2",
    "STACKLAB_EMBEDDED_POLL_SECONDS": "0.1",
    "STACKLAB_RESEND_AFTER_SECONDS": "3",
    # Small import budgets, so hostile uploads hit them in a second or two.
    "STACKLAB_IMPORT_MEMORY_MB": "768",
    "STACKLAB_IMPORT_TIMEOUT_SECONDS": "5",
}


def create_pg_database() -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database; returns its URL and a function that drops it."""
    import sqlalchemy as sa

    name = f"stacklab_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


STACK_VARS = (
    "STACKLAB_DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "STACKLAB_QUEUE",
    "STACKLAB_TOKEN",
    *FAST,
)


def reset_process_state() -> None:
    """Forget cached settings, engine and Celery client, so a new environment takes."""
    from store import queue
    from store.db import reset_caches

    reset_caches()
    queue.client.cache_clear()


@contextmanager
def stack_env(env: dict[str, str]) -> Iterator[None]:
    """Run with exactly these stacklab variables set, then restore the old ones."""
    saved = {key: os.environ.get(key) for key in STACK_VARS}
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


class Workers:
    """Celery worker processes started with the stack's environment."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str) -> subprocess.Popen:
        """A prefork worker with one child, on the stack's queue."""
        log = (self.log_dir / f"{name}.log").open("w")
        proc = subprocess.Popen(
            worker_command(self.env["STACKLAB_QUEUE"], name),
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the test can kill it whole
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str, every: float = 0.2):
    """Poll until predicate() is truthy; returns its value or fails saying what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
