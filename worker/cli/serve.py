"""`stacklab serve`: the web app and GPU worker(s) together, on whatever the settings say."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import typer


def worker_command(queue: str, name: str) -> list[str]:
    """One prefork worker with one child: one job at a time per GPU."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--pool=prefork",
        "--concurrency=1",
        "-Q",
        queue,
        "-n",
        f"{name}@%h",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
    ]


def serve(host: str, port: int, workers: int) -> None:
    """Start uvicorn and `workers` Celery workers; stop them all on Ctrl-C."""
    from backend.config import get_settings
    from backend.db import upgrade_schema
    from worker.datasets import ensure_builtin

    settings = get_settings()
    upgrade_schema()
    for name in ("demo", "demo-imbalanced"):
        ensure_builtin(name)
    queue = "embedded SQLite queue" if settings.embedded_broker else settings.celery_broker_url
    typer.echo(f"database: {settings.sqlalchemy_url}\nqueue:    {queue}")
    from backend import queue as job_queue

    job_queue.declare()  # before the workers: two creating it at once would crash one
    procs = [
        subprocess.Popen(worker_command(settings.queue, f"worker{i + 1}")) for i in range(workers)
    ]
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "backend.main:app",
                "--host",
                host,
                "--port",
                str(port),
            ]
        )
    )
    typer.echo(f"stacklab is up: http://{host}:{port}  (Ctrl-C stops it)")
    # A service manager stops us with SIGTERM: take the web app and workers down too.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(procs)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
