"""The command lines of the processes `stacklab` starts: the web app and the Celery workers.

The CLI is the composition root, the one place that names both the web's and the worker's
modules in a command line; `serve`, `worker`, the tests, `bench/` and `docs/` all start
their processes with these, so a change of flags lands everywhere at once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobspec.scheduling import Lane
from worker import device

if TYPE_CHECKING:
    from store.settings import Settings

WEB_APP = "backend.main:app"
CELERY_APP = "worker.celery_app"

# The worker process reads its lane from this variable (training when unset): which work
# it claims, and whether it imports TensorFlow at all (the CPU lane does not).
LANE_VARIABLE = device.LANE_VARIABLE
# The CPU lane worker's name, in the queue panel and on the imports it ran (cpu-lane@host:pid);
# not "cpu", the name of a training worker on a machine without a GPU.
CPU_LANE_NAME = "cpu-lane"


def worker_command(queue: str, name: str) -> list[str]:
    """One prefork worker with one child on `queue`: one job at a time per GPU."""
    return [
        *(sys.executable, "-m", "celery", "-A", CELERY_APP, "worker"),
        *("--pool=prefork", "--concurrency=1", "-Q", queue, "-n", f"{name}@%h"),
        *("--loglevel=INFO", "--without-gossip", "--without-mingle"),
    ]


@dataclass(frozen=True)
class LaneWorker:
    """A worker of one lane: its command line, and what its environment must add."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


def lane_worker(
    lane: Lane, name: str | None = None, *, settings: Settings | None = None
) -> LaneWorker:
    """The worker of `lane`, named `name` (the CPU lane's: cpu-lane): it consumes the lane's
    queue (STACKLAB_QUEUE for training, STACKLAB_CPU_QUEUE for the CPU lane) and is told its
    lane; a CPU lane worker sees no GPU."""
    from store.queue import lane_queue  # Celery: only when a worker is started

    name = name or (CPU_LANE_NAME if lane is Lane.CPU else "worker")
    return LaneWorker(worker_command(lane_queue(lane, settings), name), lane_env(lane, name))


def lane_env(lane: Lane, name: str | None = None) -> dict[str, str]:
    """The variables a worker of `lane` runs with (a training worker's device comes from
    `device.gpu_env`, set beside these)."""
    env = {LANE_VARIABLE: lane.value}
    if lane is Lane.CPU:
        env |= {"CUDA_VISIBLE_DEVICES": "", device.NAME_VARIABLE: name or CPU_LANE_NAME}
    return env


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
