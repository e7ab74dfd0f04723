"""`stacklab serve` keeps its processes up: a killed worker is started again, the web app
keeps answering, and SIGTERM still stops everything. Beside its training worker it runs one
CPU lane worker (imports, "evaluate now"), which a training worker's death leaves alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from cli.processes import CPU_LANE_NAME, LANE_VARIABLE
from tests.stack import REPO_ROOT, STACK_VARS, free_port, scaled, wait_for
from tests.stack import pool_children as children

pytestmark = pytest.mark.slow


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def celery_workers(serve_pid: int) -> dict[str, int]:
    """serve's Celery worker processes by name (`-n NAME@%h`)."""
    found = {}
    for pid in children(serve_pid):
        words = cmdline(pid).split()
        if "celery" in words and "-n" in words:
            found[words[words.index("-n") + 1].split("@")[0]] = pid
    return found


def celery_main(serve_pid: int, name: str = "worker1") -> int | None:
    return celery_workers(serve_pid).get(name)


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_serve_restarts_a_killed_worker_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in STACK_VARS}
    env |= {"STACKLAB_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port), "--workers", "1"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: answers(port), timeout=120, what="the web app", every=0.5)
        first = wait_for(lambda: celery_main(serve.pid), timeout=60, what="the worker")
        cpu_lane = wait_for(
            lambda: celery_main(serve.pid, CPU_LANE_NAME), timeout=60, what="the CPU lane worker"
        )
        assert set(celery_workers(serve.pid)) == {"worker1", CPU_LANE_NAME}
        assert environ(cpu_lane)[LANE_VARIABLE] == "cpu"
        assert environ(first)[LANE_VARIABLE] == "training"
        wait_for(lambda: children(first), timeout=120, what="the worker's pool child")
        os.kill(first, signal.SIGKILL)

        second = wait_for(
            lambda: (p := celery_main(serve.pid)) not in (None, first) and p,
            timeout=60,
            what="a new worker process",
        )
        assert "worker1 exited with code -9; restarting it" in log_path.read_text()
        assert serve.poll() is None and answers(port)
        # It stays up: it got as far as starting its pool, and was restarted only once.
        wait_for(lambda: children(second), timeout=120, what="the new worker's pool child")
        assert celery_main(serve.pid) == second
        assert log_path.read_text().count("restarting it") == 1
        assert celery_main(serve.pid, CPU_LANE_NAME) == cpu_lane  # untouched
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            code = serve.wait(timeout=scaled(90))
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            raise
    assert code == 0, log_path.read_text()[-3000:]
    assert not answers(port)
    # The whole group went down with it.
    wait_for(lambda: group_gone(serve.pid), timeout=60, what="serve's process group to end")
