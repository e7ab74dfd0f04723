"""Stopping `stacklab serve` gives its workers STACKLAB_WORKER_STOP_GRACE_SECONDS (60 s, as
docker-compose.yml's stop_grace_period) to hand their runs back, instead of killing them
after a fixed 30 s: a run in a batch longer than that goes back to the queue (attempt
`interrupted`), not left `running` for the reaper. Past the grace, what is left is killed,
its children too. A web app that cannot have its port ends `serve`, workers and all.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest
import yaml

from cli import serve as serve_module
from cli.errors import CliError
from store.settings import Settings, get_settings
from tests.cli.serving import group_gone, kill_group, start_serve
from tests.cli.slowkind import HOLD_DIR_ENV
from tests.stack import REPO_ROOT, WaitTimeout, scaled, stack_env, wait_for

# A stand-in worker: on SIGTERM it notes it and exits once `release` exists (a batch that
# ends when the test says); with "stubborn" it ignores SIGTERM and keeps a child of its own.
FAKE_WORKER = """
import os, signal, subprocess, sys, time
from pathlib import Path
here = Path(sys.argv[1])
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (here / "child").write_text(str(child.pid))
else:
    def on_term(*_):
        (here / "told").touch()
        while not (here / "release").exists():
            time.sleep(0.05)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
(here / "ready").touch()
while True:
    time.sleep(0.05)
"""


def fake_worker(here: Path, mode: str) -> serve_module.Supervised:
    here.mkdir(parents=True, exist_ok=True)
    service = serve_module.Supervised(
        f"fake-{mode}", [sys.executable, "-c", FAKE_WORKER, str(here), mode]
    )
    service.start()
    wait_for(lambda: (here / "ready").exists(), timeout=60, what="the fake worker to start")
    return service


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def handlers_kept():
    """supervise() installs SIGINT and SIGTERM handlers in this process: it must put back
    the ones it found (a later test of the process, say a Ctrl-C test, relies on them)."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    after = {sig: signal.getsignal(sig) for sig in before}
    for sig, handler in before.items():
        signal.signal(sig, handler)
    assert after == before, "supervise() left its signal handlers installed"


@pytest.mark.slow
def test_stop_waits_the_grace_for_a_worker_finishing_its_batch(tmp_path):
    service = fake_worker(tmp_path / "w", "polite")
    stopping = threading.Thread(target=serve_module._stop, args=([service], scaled(600)))
    stopping.start()
    wait_for(lambda: (tmp_path / "w" / "told").exists(), timeout=60, what="SIGTERM to arrive")
    (tmp_path / "w" / "release").touch()  # its batch ends whenever it ends: within the grace
    stopping.join(scaled(120))
    assert not stopping.is_alive()
    assert service.proc is not None and service.proc.returncode == 0  # it stopped itself


@pytest.mark.slow
def test_stop_kills_what_is_left_after_the_grace_children_too(tmp_path):
    service = fake_worker(tmp_path / "w", "stubborn")
    child = int((tmp_path / "w" / "child").read_text())
    serve_module._stop([service], 0.5)
    assert service.proc is not None and service.proc.returncode == -signal.SIGKILL
    wait_for(lambda: not alive(child), timeout=60, what="its child to be killed too")


@pytest.mark.slow
def test_a_web_that_cannot_have_its_port_ends_serve_and_its_workers(
    tmp_path, monkeypatch, handlers_kept
):
    monkeypatch.setenv("STACKLAB_WORKER_STOP_GRACE_SECONDS", "7")
    get_settings.cache_clear()
    graces: list[float] = []
    real_stop = serve_module._stop
    monkeypatch.setattr(serve_module, "_stop", lambda s, g: (graces.append(g), real_stop(s, g)))
    worker = serve_module.Supervised(
        "worker1", [sys.executable, "-c", "import time; time.sleep(600)"]
    )
    web = serve_module.Supervised(
        "web",
        [sys.executable, "-c", "raise SystemExit(1)"],  # as uvicorn does on a taken port
        blocked=lambda: "port 8123 on 127.0.0.1 is already in use",
    )
    try:
        with pytest.raises(
            CliError, match="web exited with code 1 and cannot start again: port 8123"
        ):
            serve_module.supervise([worker, web], "up")
    finally:
        get_settings.cache_clear()
    assert graces == [7.0]  # the setting, not a constant
    assert worker.proc is not None and worker.proc.poll() is not None  # no worker lingers
    assert web.restart_at is None  # and it was never scheduled to start again


def terminal_ctrl_c(pid: int) -> None:
    os.killpg(pid, signal.SIGINT)  # a terminal's Ctrl-C reaches serve's whole group


def service_manager_stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)  # systemd, docker, kill: serve alone


@pytest.mark.slow
@pytest.mark.parametrize("stop", [service_manager_stop, terminal_ctrl_c])
def test_stopping_serve_mid_batch_hands_the_run_back(tmp_path, stop):
    hold = tmp_path / "hold"
    hold.mkdir()
    # Started with SIGINT ignored, as a shell's background job (or a test process whose
    # SIGINT some library left ignored) starts it: serve still stops on Ctrl-C.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve = start_serve(
            tmp_path,
            env={HOLD_DIR_ENV: str(hold), "STACKLAB_WORKER_STOP_GRACE_SECONDS": f"{scaled(300):g}"},
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    serve.up()
    try:
        run_id = serve.launch(epochs=3)
        wait_for(lambda: (hold / "in-batch").exists(), timeout=180, what="the run mid-batch")
        assert serve.run(run_id)["status"] == "running"
        stop(serve.proc.pid)
        # The worker was told and serve is waiting for it; the batch goes on meanwhile, as
        # long as the test likes (under the old fixed 30 s the worker was killed here).
        try:
            wait_for(
                lambda: (
                    "told to stop: run" in serve.output() and "stopping: waiting" in serve.output()
                ),
                timeout=120,
                what="the worker to be told to stop",
            )
        except WaitTimeout as timeout:  # what serve and its worker said, for the diagnosis
            raise AssertionError(f"{timeout}; serve said:\n{serve.output()[-4000:]}") from None
        assert serve.proc.poll() is None
        (hold / "release").touch()
        code = serve.exited(timeout=240)
    finally:
        (hold / "release").touch()
        if serve.proc.poll() is None:
            serve.stop()
        kill_group(serve.proc.pid)
    said = serve.output()
    assert code == 0, said[-3000:]
    assert "killed" not in said and f"run {run_id}: handed back" in said, said[-3000:]
    wait_for(lambda: group_gone(serve.proc.pid), timeout=60, what="nothing of serve left")
    with stack_env({"STACKLAB_DATA_DIR": str(serve.data_dir)}):
        from store.db import session_scope
        from store.runs import service as runs_service

        with session_scope() as session:
            run = runs_service.get_run(session, run_id)
            outcomes = [(a.number, a.outcome) for a in runs_service.list_attempts(session, run_id)]
            status = run.status
    assert status == "queued"
    assert outcomes == [(1, "interrupted")]


def test_the_default_grace_is_docker_compose_s_and_the_gpu_supervisor_gets_longer():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    default = Settings.model_fields["worker_stop_grace_seconds"].default
    assert compose["worker"]["stop_grace_period"] == f"{default:g}s"
    # `stacklab worker --gpus all` waits the grace itself, then kills: docker must wait longer.
    supervisor = compose["workers-all-gpus"]["stop_grace_period"]
    assert int(supervisor.removesuffix("s")) > default
