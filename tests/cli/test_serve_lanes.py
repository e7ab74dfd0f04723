"""Which workers `serve` and `worker` start, on which lane: serve starts its training workers
and one CPU lane worker (imports, "evaluate now") beside them; `worker` starts one lane's
worker, and `worker --gpus` training workers only. No process is started here."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from cli import serve as serve_module
from cli.main import app
from cli.processes import CPU_LANE_NAME, LANE_VARIABLE
from jobspec.scheduling import Lane
from store.settings import get_settings
from tests.stack import free_port
from worker import device

# What the CLI sets in its own environment before it becomes a worker (os.execv).
WORKER_VARIABLES = (LANE_VARIABLE, device.NAME_VARIABLE, "CUDA_VISIBLE_DEVICES")


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture
def settings_here(tmp_path, monkeypatch):
    """Settings on a data directory of the test's own, with the default queues."""
    monkeypatch.setenv("STACKLAB_DATA_DIR", str(tmp_path / "data"))
    for name in ("STACKLAB_QUEUE", "STACKLAB_CPU_QUEUE", *WORKER_VARIABLES):
        # set, then deleted: monkeypatch then undoes whatever the CLI sets in os.environ
        # (a bare delenv of an absent variable records nothing, and the CLI's lane would
        # leak into every later test of this process)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def supervised(monkeypatch) -> list[serve_module.Supervised]:
    """What serve or worker would supervise, instead of starting it."""
    started: list[serve_module.Supervised] = []
    monkeypatch.setattr("store.queue.declare", lambda: None)
    monkeypatch.setattr(serve_module, "_prepare_store", lambda: None)
    monkeypatch.setattr(serve_module, "supervise", lambda services, up: started.extend(services))
    return started


@pytest.fixture
def execs(monkeypatch) -> list[list[str]]:
    """The command line `stacklab worker` would become, and nothing exec'd."""
    seen: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, args: seen.append(list(args)))
    return seen


def test_serve_starts_one_cpu_lane_worker_beside_the_training_workers(settings_here, supervised):
    serve_module.serve("127.0.0.1", free_port(), workers=2)
    names = [s.name for s in supervised]
    assert names == ["worker1", "worker2", CPU_LANE_NAME, "web"]
    *training, cpu_lane, _web = supervised
    for worker in training:
        assert flag(worker.command, "-Q") == settings_here.queue == "gpu"
        assert worker.env == {LANE_VARIABLE: Lane.TRAINING.value}
    assert flag(cpu_lane.command, "-Q") == settings_here.cpu_lane_queue == "gpu-cpu"
    assert flag(cpu_lane.command, "-n") == f"{CPU_LANE_NAME}@%h"
    assert cpu_lane.env == {
        LANE_VARIABLE: Lane.CPU.value,
        "CUDA_VISIBLE_DEVICES": "",  # it sees no GPU
        device.NAME_VARIABLE: CPU_LANE_NAME,  # cpu-lane@host:pid in the workers list
    }


def test_serve_without_the_cpu_lane_where_one_runs_elsewhere(settings_here, supervised):
    result = CliRunner().invoke(app, ["serve", "--port", str(free_port()), "--no-cpu-lane"])
    assert result.exit_code == 0, result.output
    assert [s.name for s in supervised] == ["worker1", "web"]


def test_serve_s_gpu_workers_are_training_workers_and_keep_their_device(
    settings_here, supervised, monkeypatch, tmp_path
):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: a)'\necho 'GPU 1: NVIDIA H200 (UUID: b)'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    serve_module.serve("127.0.0.1", free_port(), workers=1, gpus="all")
    gpu0, gpu1, cpu_lane, _web = supervised
    assert (gpu0.name, gpu1.name, cpu_lane.name) == ("gpu0", "gpu1", CPU_LANE_NAME)
    assert gpu1.env == {**device.gpu_env("1"), LANE_VARIABLE: Lane.TRAINING.value}


def test_worker_gpus_starts_training_workers_only(settings_here, supervised):
    result = CliRunner().invoke(app, ["worker", "--gpus", "all"])
    assert result.exit_code == 0, result.output
    [only] = supervised  # no GPU here: one training worker on the CPU, and no CPU lane
    assert only.name == "cpu" and only.env is not None
    assert only.env[LANE_VARIABLE] == Lane.TRAINING.value
    assert flag(only.command, "-Q") == settings_here.queue


def test_worker_lane_cpu_becomes_the_cpu_lane_worker(settings_here, execs):
    result = CliRunner().invoke(app, ["worker", "--lane", "cpu"])
    assert result.exit_code == 0, result.output
    [command] = execs
    assert flag(command, "-Q") == settings_here.cpu_lane_queue
    assert flag(command, "-n") == f"{CPU_LANE_NAME}@%h"
    assert os.environ[LANE_VARIABLE] == Lane.CPU.value
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert device.worker_name().startswith(f"{CPU_LANE_NAME}@")
    assert "lane:     CPU lane" in result.output and "queue:    embedded" in result.output


@pytest.mark.parametrize(
    ("args", "lane", "name"),
    [([], Lane.TRAINING, "worker"), (["--gpu", "1"], Lane.TRAINING, "gpu1")],
)
def test_worker_defaults_to_the_training_lane(settings_here, execs, args, lane, name):
    result = CliRunner().invoke(app, ["worker", *args])
    assert result.exit_code == 0, result.output
    [command] = execs
    assert flag(command, "-Q") == settings_here.queue
    assert flag(command, "-n") == f"{name}@%h"
    assert os.environ[LANE_VARIABLE] == lane.value


@pytest.mark.parametrize("gpu_flag", [["--gpu", "0"], ["--gpus", "all"]])
def test_a_gpu_for_the_cpu_lane_is_refused_plainly(settings_here, execs, supervised, gpu_flag):
    result = CliRunner().invoke(app, ["worker", "--lane", "cpu", *gpu_flag])
    assert result.exit_code != 0
    assert f"{gpu_flag[0]}: the CPU lane uses no GPU" in result.output, result.output
    assert "Traceback" not in result.output
    assert not execs and not supervised


def test_an_unknown_lane_is_refused_naming_the_lanes(execs):
    result = CliRunner().invoke(app, ["worker", "--lane", "gpu"])
    assert result.exit_code != 0 and not execs
    assert "training" in result.output and "cpu" in result.output


def test_serve_says_which_database_and_broker_without_their_passwords(monkeypatch):
    from store.settings import Settings

    url = "postgresql+psycopg://lab:s3cret@db.lab:5432/stacklab?sslmode=verify-full"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", "rediss://:hunter2@db.lab:6380/0?ssl_cert_reqs=required")
    said = serve_module.addresses(Settings())
    assert "s3cret" not in said and "hunter2" not in said
    assert "lab:***@db.lab:5432/stacklab" in said and "db.lab:6380" in said
