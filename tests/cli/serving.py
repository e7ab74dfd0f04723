"""A `stacklab serve` started by a test: its own session (so its whole process group can be
checked and killed), its output in a file, the slow test kind plugged in, short timings."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.cli.slowkind import NAME as SLOW_KIND
from tests.cli.slowkind import PLUGIN as SLOW_KIND_PLUGIN
from tests.stack import FAST, REPO_ROOT, STACK_VARS, free_port, scaled, wait_for


@dataclass
class Serving:
    """One `python -m cli serve` process."""

    proc: subprocess.Popen
    port: int
    data_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def up(self) -> Serving:
        """Wait until it answers and says so; fails early, with its output, if it exits."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}):\n{self.output()}")
            return self.answers() and "stacklab is up" in self.output()

        wait_for(ready, timeout=180, what="serve to answer", every=0.5)
        return self

    def launch(self, **params: object) -> int:
        body = {"kind": SLOW_KIND, "dataset": "demo", "params": params}
        response = httpx.post(f"{self.url}/api/runs", json=body, timeout=30)
        assert response.status_code == 201, response.text
        return response.json()[0]["id"]

    def run(self, run_id: int) -> dict:
        response = httpx.get(f"{self.url}/api/runs/{run_id}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        """Signal it and wait for it to exit; kills its group if it does not."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            kill_group(self.proc.pid)
            self.proc.wait()
            raise

    def exited(self, timeout: float = 120) -> int:
        """Its exit code, once it ends by itself."""
        return self.proc.wait(timeout=scaled(timeout))


def start_serve(
    tmp_path: Path,
    *,
    name: str = "serve",
    data_dir: Path | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Serving:
    """`stacklab serve` with one worker on an embedded store in `data_dir`; not yet up."""
    data_dir = data_dir or tmp_path / f"{name}-data"
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in STACK_VARS}
    full_env |= FAST | {
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_KIND_MODULES": SLOW_KIND_PLUGIN,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port), "--workers", "1"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: what it leaves behind is findable
        )
    return Serving(proc, port, data_dir, log)


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
