"""The command lines of the processes `stacklab` starts: the web app and the Celery workers.

The CLI is the composition root, the one place that names both the web's and the worker's
modules in a command line; `serve`, `worker`, the tests, `bench/` and `docs/` all start
their processes with these, so a change of flags lands everywhere at once.
"""

from __future__ import annotations

import sys

WEB_APP = "backend.main:app"
CELERY_APP = "worker.celery_app"


def worker_command(queue: str, name: str) -> list[str]:
    """One prefork worker with one child: one job at a time per GPU."""
    return [
        *(sys.executable, "-m", "celery", "-A", CELERY_APP, "worker"),
        *("--pool=prefork", "--concurrency=1", "-Q", queue, "-n", f"{name}@%h"),
        *("--loglevel=INFO", "--without-gossip", "--without-mingle"),
    ]


# The server's edges (docs/security-web.md): h11 with the header limits of the settings (431),
# and forwarded headers believed only from STACKLAB_TRUSTED_PROXIES, which the app itself
# applies (backend/security.py): uvicorn's own --proxy-headers would trust loopback, where
# `serve` listens. The compose file and the Dockerfile pass the same flags.
WEB_PROTOCOL = "backend.http_edges:EdgeProtocol"
WEB_FLAGS = ("--http", WEB_PROTOCOL, "--no-proxy-headers")


def web_command(host: str, port: int, *, log_level: str | None = None) -> list[str]:
    """uvicorn serving the dashboard and the API."""
    command = [sys.executable, "-m", "uvicorn", WEB_APP, *WEB_FLAGS]
    command += ["--host", host, "--port", str(port)]
    return command + (["--log-level", log_level] if log_level else [])
