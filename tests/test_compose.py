"""The compose file and Dockerfile describe the stack the code expects (no Docker engine needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cli.processes import CPU_LANE_NAME
from jobspec.scheduling import Lane
from store.settings import Settings
from tests.stack import REPO_ROOT, scaled
from worker import device

yaml = pytest.importorskip("yaml")

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
APP_SERVICES = ("web", "worker", "cpu-worker")


def load(text: str | None = None) -> dict:
    return yaml.safe_load(text if text is not None else COMPOSE.read_text())


def words(command) -> list[str]:
    return command.split() if isinstance(command, str) else list(command)


def gpu_devices(service: dict) -> list[dict]:
    return service["deploy"]["resources"]["reservations"]["devices"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


def test_the_four_services_exist(compose):
    assert {"redis", "postgres", "web", "worker"} <= set(compose["services"])


def test_redis_persists_its_queue_with_append_only(compose):
    redis = compose["services"]["redis"]
    command = words(redis["command"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])


def test_worker_reserves_one_nvidia_gpu_and_serves_the_gpu_queue(compose):
    worker = compose["services"]["worker"]
    [device] = gpu_devices(worker)
    assert device["driver"] == "nvidia" and device["count"] == 1
    assert "gpu" in device["capabilities"]
    command = words(worker["command"])
    assert command[:3] == ["celery", "-A", "worker.celery_app"]
    assert command[command.index("-Q") + 1] == "gpu"
    assert "--concurrency=1" in command


def default(name: str) -> object:
    return Settings.model_fields[name].default


def test_the_training_worker_is_on_the_training_lane(compose):
    worker = compose["services"]["worker"]
    assert worker["environment"][device.LANE_VARIABLE] == Lane.TRAINING.value
    command = words(worker["command"])
    assert command[command.index("-Q") + 1] == default("queue")


def test_cpu_worker_serves_the_cpu_lane_queue_without_a_gpu(compose):
    services = compose["services"]
    cpu, worker = services["cpu-worker"], services["worker"]
    assert "deploy" not in cpu, "the CPU lane reserves no GPU"
    env = cpu["environment"]
    assert env[device.LANE_VARIABLE] == Lane.CPU.value
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env[device.NAME_VARIABLE] == CPU_LANE_NAME
    command = words(cpu["command"])
    assert command[:3] == ["celery", "-A", "worker.celery_app"]
    # STACKLAB_CPU_QUEUE's default: the training queue's name followed by -cpu
    cpu_queue = Settings(queue=default("queue")).cpu_lane_queue
    assert command[command.index("-Q") + 1] == cpu_queue != default("queue")
    assert "--concurrency=1" in command
    assert command[command.index("-n") + 1].startswith(f"{CPU_LANE_NAME}@")
    # The CPU image, and the GPU workers' pattern otherwise: the store, broker, volume,
    # start order, restarts and stop grace.
    assert cpu["image"] == services["web"]["image"] != worker["image"]
    assert cpu["build"] == services["web"]["build"]
    for key in ("volumes", "depends_on", "restart", "stop_grace_period"):
        assert cpu[key] == worker[key], key
    assert {k: v for k, v in env.items() if not k.startswith(("STACKLAB_WORKER", "CUDA"))} == {
        k: v for k, v in worker["environment"].items() if not k.startswith("STACKLAB_WORKER")
    }


def test_redis_and_postgres_are_not_published_to_the_network(compose):
    """Other machines reach them through a firewall rule, a tunnel or a VPN that the
    operator sets up (docs/multi-machine.md), never through a port compose opens to all."""
    for name in ("redis", "postgres"):
        assert "ports" not in compose["services"][name], name


def test_worker_gets_time_to_hand_its_run_back_on_docker_stop(compose):
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) >= 30  # docker's default 10 s is tight


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_reach_the_compose_database_and_redis(compose, name):
    services = compose["services"]
    env = services[name]["environment"]
    db = urlsplit(env["DATABASE_URL"])
    assert db.scheme == "postgresql+psycopg" and db.hostname == "postgres"
    assert db.path.lstrip("/") == services["postgres"]["environment"]["POSTGRES_DB"]
    assert db.username == services["postgres"]["environment"]["POSTGRES_USER"]
    redis = urlsplit(env["REDIS_URL"])
    assert redis.scheme == "redis" and redis.hostname == "redis" and redis.port == 6379
    assert env["STACKLAB_DATA_DIR"] == "/data"
    depends = services[name]["depends_on"]
    assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"


def test_postgres_has_a_pg_isready_healthcheck(compose):
    postgres = compose["services"]["postgres"]
    assert "pg_isready" in words(postgres["healthcheck"]["test"])
    assert "redis-cli" in words(compose["services"]["redis"]["healthcheck"]["test"])


def test_web_serves_uvicorn_on_port_8000(compose):
    web = compose["services"]["web"]
    assert words(web["command"])[:2] == ["uvicorn", "backend.main:app"]
    assert "8000:8000" in web["ports"]


def test_data_lives_in_declared_named_volumes(compose):
    declared = set(compose["volumes"])
    for name in ("redis", "postgres", "worker"):
        assert compose["services"][name].get("volumes"), f"{name} keeps its data in no volume"
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_the_commented_second_worker_is_one_line_on_gpu_1():
    lines = [line for line in COMPOSE.read_text().splitlines() if line.startswith("  # worker2:")]
    assert len(lines) == 1, "the compose file should show a one-line second worker"
    compose = load(COMPOSE.read_text().replace("  # worker2:", "  worker2:"))
    worker, worker2 = compose["services"]["worker"], compose["services"]["worker2"]
    [device] = gpu_devices(worker2)
    assert device["device_ids"] == ["1"] and "count" not in device
    assert {k: v for k, v in worker2.items() if k != "deploy"} == {
        k: v for k, v in worker.items() if k != "deploy"
    }


def test_dockerfile_copies_paths_that_exist():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^ARG EXTRAS=", text, re.M)
    assert re.search(r"^USER (?!root\b)\S+", text, re.M), "the image should not run as root"
    sources = [
        source
        for line in re.findall(r"^COPY (.+)$", text, re.M)
        for source in line.split()[:-1]
        if not source.startswith("--")
    ]
    assert {"pyproject.toml", "alembic.ini"} <= set(sources)
    # every package the project installs is in the image (store/ was once forgotten)
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {f"{p.rstrip('*')}/" for p in packages} <= set(sources), packages
    missing = [s for s in sources if not (REPO_ROOT / s).exists()]
    assert not missing, f"the Dockerfile copies {missing}, which the repository lacks"


def test_docker_compose_accepts_the_file(tmp_path: Path):
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    for text in (COMPOSE.read_text(), COMPOSE.read_text().replace("  # worker2:", "  worker2:")):
        path = tmp_path / "docker-compose.yml"
        path.write_text(text)
        done = subprocess.run(
            [
                docker_compose,
                "-f",
                str(path),
                "--project-directory",
                str(REPO_ROOT),
                "config",
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=scaled(120),
        )
        assert done.returncode == 0, done.stderr
