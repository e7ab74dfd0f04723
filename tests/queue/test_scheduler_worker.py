"""The worker side of the scheduler, through real Celery workers, broker and database: a
message only wakes a worker, which claims what store/scheduler.py says is next; the CPU
lane takes imports while training workers are busy, and never loads TensorFlow to do so.

Each test starts the workers it needs on a stack of its own (not the package's `stack`,
whose idle workers would count as free and take the runs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobspec.scheduling import Lane
from store import queue
from store.db import session_scope
from store.runs import launch as launcher
from store.runs.models import Run
from store.runs.schemas import RunCreate, RunRead
from store.workers.models import WorkerRecord
from tests.stack import (
    FAST,
    REDIS_URL,
    REPO_ROOT,
    Workers,
    create_pg_database,
    pool_children,
    stack_env,
    wait_for,
)

SHORT = {"encoder": "scratch", "architecture": "single", "epochs": 1, "batch_size": 50}
LONG_STAGE = {"epochs": 500, "batch_size": 20}
LONG = {"ae01": LONG_STAGE, "ae02": LONG_STAGE, "ae03": LONG_STAGE}
# Beyond tests.stack.STACK_VARS: set for the stack's life, then restored.
EXTRA_VARS = ("STACKLAB_CPU_QUEUE", "STACKLAB_PREEMPT_AFTER_SECONDS")


@dataclass
class LaneStack:
    kind: str
    env: dict[str, str]
    data_dir: Path

    @contextlib.contextmanager
    def workers(self, tag: str) -> Iterator[Workers]:
        """Workers for one test, stopped when it ends (logs: <tag>-<name>.log)."""
        log_dir = self.data_dir / tag
        log_dir.mkdir()
        workers = Workers(self.env, log_dir)
        try:
            yield workers
        finally:
            workers.stop_all(timeout=20)


@contextlib.contextmanager
def _extra_env(values: dict[str, str]) -> Iterator[None]:
    from tests.stack import reset_process_state

    saved = {key: os.environ.get(key) for key in EXTRA_VARS}
    os.environ.update(values)
    reset_process_state()  # the settings read them again
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module", params=["redis-postgres", "embedded"])
def lane_stack(request, tmp_path_factory) -> Iterator[LaneStack]:
    """Environment, schema and a tiny demo data set; no worker (each test starts its own).
    Runs are set aside at once (STACKLAB_PREEMPT_AFTER_SECONDS=0)."""
    data_dir = tmp_path_factory.mktemp(f"lanes-{request.param}")
    tag = uuid.uuid4().hex[:8]
    env = {
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_QUEUE": f"test-{tag}",
        **FAST,
    }
    extra = {"STACKLAB_CPU_QUEUE": f"test-{tag}-cpu", "STACKLAB_PREEMPT_AFTER_SECONDS": "0"}
    drop = None
    if request.param == "redis-postgres":
        url, drop = create_pg_database()
        env["DATABASE_URL"], env["REDIS_URL"] = url, REDIS_URL
    try:
        with stack_env(env), _extra_env(extra):
            from store.db import upgrade_schema
            from worker.datasets import register
            from worker.ml.datasets.demo import make_demo

            upgrade_schema()
            register(make_demo(seed=0, n_train=200, n_test=50), name="demo-tiny")
            queue.declare()
            yield LaneStack(request.param, {**os.environ}, data_dir)
    finally:
        if drop:
            drop()


def launch(**fields) -> RunRead:
    with session_scope() as session:
        runs = launcher.launch(session=session, run_in=RunCreate(**fields))
        return RunRead.model_validate(runs[0])


def read(run_id: int) -> RunRead:
    with session_scope() as session:
        return RunRead.model_validate(session.get(Run, run_id))


def finished(run_id: int, timeout: float = 240) -> RunRead:
    return wait_for(
        lambda: (r := read(run_id)).status in ("succeeded", "failed", "cancelled") and r,
        timeout=timeout,
        what=f"run {run_id} to finish",
    )


def cancel(run_id: int) -> None:
    with session_scope() as session:
        launcher.cancel(session=session, run_id=run_id)
    finished(run_id, timeout=60)


def lanes_online() -> dict[str, str]:
    """Worker name -> its lane, for the workers that reported in."""
    with session_scope() as session:
        return {w.name: w.lane for w in session.query(WorkerRecord)}


@pytest.mark.slow
def test_a_worker_woken_for_one_run_runs_the_higher_priority_run_first(lane_stack):
    low = launch(kind="finetune", dataset="demo-tiny", params=SHORT, name="low first")
    high = launch(kind="finetune", dataset="demo-tiny", params=SHORT, name="high", priority=5)
    with lane_stack.workers("order") as workers:
        workers.start("t1")  # its first message is the low run's
        low, high = finished(low.id), finished(high.id)
    assert (low.status, high.status) == ("succeeded", "succeeded"), (low.error, high.error)
    assert low.queued_at < high.queued_at
    assert high.started_at < low.started_at
    log = (lane_stack.data_dir / "order" / "t1.log").read_text()
    assert f"run {high.id}: attempt 1 (woken for run {low.id})" in log


@pytest.mark.slow
def test_an_import_runs_on_the_cpu_lane_while_training_is_busy(lane_stack, tmp_path):
    from tests.ml.test_import_sandbox import small_npz
    from tests.queue.test_hostile_imports import ended, start

    with lane_stack.workers("cpu") as workers:
        workers.start("t1")
        cpu = workers.start("cpu-lane", Lane.CPU)
        long = launch(kind="pretrain", dataset="demo-tiny", params=LONG, name="long")
        wait_for(
            lambda: read(long.id).progress.get("epoch", 0) >= 1,
            timeout=120,
            what="the long run to train",
        )
        name = f"lane-{uuid.uuid4().hex[:6]}"
        row = ended(start(small_npz(tmp_path / "small.npz"), name), timeout=120)
        assert row.state == "done", row.error
        assert row.worker and row.worker.startswith("cpu-lane@")
        assert read(long.id).status == "running"  # the training worker never stopped
        # The CPU lane's pool child handled the import without loading TensorFlow.
        children = pool_children(cpu.pid)
        assert children
        maps = Path(f"/proc/{children[0]}/maps").read_text()
        assert "tensorflow" not in maps.lower()
        lanes = lanes_online()
        assert any(n.startswith("cpu-lane@") and lane == "cpu" for n, lane in lanes.items())
        assert "training" in lanes.values()
        cancel(long.id)


def test_a_cpu_lane_child_hides_gpus_loads_no_tensorflow_and_claims_no_run(tmp_path):
    # What a forked CPU-lane pool child runs (worker_process_init), without the upkeep.
    code = (
        "import os, sys\n"
        "from celery.signals import worker_process_init\n"
        "import worker.celery_app, worker.tasks\n"
        "from worker import liveness, runner\n"
        "liveness.start_upkeep = lambda **kwargs: None\n"
        "worker_process_init.send(sender=None)\n"
        "print(repr(os.environ['CUDA_VISIBLE_DEVICES']), runner.capacity().lane.value,\n"
        "      runner.execute(1), 'tensorflow' in sys.modules or 'keras' in sys.modules)\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CUDA_VISIBLE_DEVICES", "DATABASE_URL", "REDIS_URL")
    }
    env |= {"STACKLAB_DATA_DIR": str(tmp_path), "STACKLAB_WORKER_LANE": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "'' cpu nothing to do False"


def test_the_gpu_memory_reported_is_the_visible_gpus(tmp_path, monkeypatch):
    from worker import device

    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        'echo "$@" >> "$(dirname "$0")/calls"\n'
        'case "$*" in *"-i 1"*) echo "81559" ;; *) echo "[N/A]" ;; esac\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(device.LANE_VARIABLE, raising=False)

    def memory(visible: str | None) -> int | None:
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        device.gpu_memory_mb.cache_clear()
        return device.gpu_memory_mb()

    try:
        assert memory("1,2") == 81559  # the first visible device, by its index
        assert memory(None) is None  # GPU 0: the driver says N/A
        assert memory("") is None and memory("-1") is None  # hidden: not asked
        monkeypatch.setenv(device.LANE_VARIABLE, "cpu")
        assert memory("1") is None  # the CPU lane has no GPU
        calls = (tmp_path / "calls").read_text().splitlines()
        assert calls == [
            "--query-gpu=memory.total --format=csv,noheader,nounits -i 1",
            "--query-gpu=memory.total --format=csv,noheader,nounits -i 0",
        ]
        monkeypatch.setenv(device.LANE_VARIABLE, "gpu")
        with pytest.raises(ValueError, match="STACKLAB_WORKER_LANE"):
            device.lane()
    finally:
        device.gpu_memory_mb.cache_clear()
