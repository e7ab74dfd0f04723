"""A second machine joins with one command: `stacklab worker`, given nothing but the broker's
and the database's addresses (REDIS_URL, DATABASE_URL), takes runs from the same queue.

Two "machines" here share only those two addresses: each `stacklab worker` has its own
working directory, data directory (its cache), HOME and TMPDIR, and an environment built
from nothing but the addresses and what any program needs to start (PATH, PYTHONPATH). The
pretrain run one of them trains is the parent of finetunes the other one runs after the
first machine has gone: the other gets the data set and the parent's weights from the
database, into its own cache (docs/multi-machine.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.stack import REDIS_URL, REPO_ROOT, create_pg_database, stack_env, wait_for
from tests.stack import pool_children as children

pytestmark = pytest.mark.slow

redis = pytest.importorskip("redis")

TINY_STAGE = {"epochs": 1, "batch_size": 50}
REDIS_CLAIM = "stacklab:second-machine-test"


@dataclass
class Machine:
    """One `stacklab worker` on a "machine" of its own: a folder it alone uses."""

    name: str
    root: Path
    proc: subprocess.Popen

    @property
    def data_dir(self) -> Path:
        return self.root / "stacklab-data"

    def output(self) -> str:
        return (self.root / "worker.log").read_text(errors="replace")

    def ran(self, worker_host: str | None) -> bool:
        """Whether this machine's worker (host:pid, its pool child's pid or its own) wrote
        that worker name."""
        pid = (worker_host or "").rsplit(":", 1)[-1]
        return pid.isdigit() and int(pid) in (self.proc.pid, *children(self.proc.pid))

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM its process group, SIGKILL what is left after `timeout`."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def the_command() -> list[str]:
    """`stacklab worker`: the installed console script, else the package as a module."""
    script = shutil.which("stacklab", path=str(Path(sys.executable).parent))
    return [script, "worker"] if script else [sys.executable, "-m", "cli", "worker"]


def start_machine(name: str, root: Path, addresses: dict[str, str]) -> Machine:
    """`stacklab worker` in `root`, with the addresses and nothing else of ours."""
    for folder in ("home", "tmp", "stacklab-data"):
        (root / folder).mkdir(parents=True)
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.defpath}",
        "PYTHONPATH": str(REPO_ROOT),  # the code, as `pip install` would put it
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "STACKLAB_DATA_DIR": str(root / "stacklab-data"),
        "LANG": "C.UTF-8",
        **addresses,
    }
    with (root / "worker.log").open("w") as log:
        proc = subprocess.Popen(
            the_command(),
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopped whole
        )
    return Machine(name, root, proc)


def claim_redis_db() -> tuple[int, Any]:
    """A Redis database of this test's own (the default queue names, and nobody else's
    keys to collide with): the first empty one, claimed atomically."""
    for db in range(1, 16):
        client = redis.Redis.from_url(REDIS_URL.rsplit("/", 1)[0] + f"/{db}")
        if client.dbsize() == 0 and client.set(REDIS_CLAIM, str(os.getpid()), nx=True, ex=3600):
            return db, client
        client.close()
    pytest.skip("no empty Redis database (1-15) for this test")


@pytest.fixture
def addresses() -> Iterator[dict[str, str]]:
    """The only things the machines share: a fresh PostgreSQL database and a Redis database."""
    url, drop = create_pg_database()
    db, client = claim_redis_db()
    try:
        yield {"DATABASE_URL": url, "REDIS_URL": REDIS_URL.rsplit("/", 1)[0] + f"/{db}"}
    finally:
        client.flushdb()
        client.close()
        drop()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_machines_sharing_only_the_addresses_run_a_parent_and_its_children(addresses, tmp_path):
    with stack_env({**addresses, "STACKLAB_DATA_DIR": str(tmp_path / "launcher")}):
        from store.artifacts import service as artifacts_service
        from store.db import session_scope, upgrade_schema
        from store.runs import launch as launcher
        from store.runs.models import Run
        from store.runs.schemas import RunCreate, RunRead
        from worker.datasets import register
        from worker.ml.datasets.demo import make_demo

        def launch(**fields: object) -> RunRead:
            with session_scope() as session:
                [run] = launcher.launch(session=session, run_in=RunCreate(**fields))
                return RunRead.model_validate(run)

        def finished(run_id: int, machines: list[Machine]) -> RunRead:
            def done() -> RunRead | None:
                for machine in machines:
                    if machine.proc.poll() is not None:
                        raise AssertionError(f"{machine.name} exited:\n{machine.output()}")
                with session_scope() as session:
                    run = RunRead.model_validate(session.get(Run, run_id))
                return run if run.status.is_finished else None

            return wait_for(done, timeout=300, what=f"run {run_id} to finish", every=0.5)

        upgrade_schema()
        register(make_demo(seed=0, n_train=200, n_test=50), name="demo-tiny")
        one = start_machine("machine-one", tmp_path / "one", addresses)
        two = start_machine("machine-two", tmp_path / "two", addresses)
        machines = [one, two]
        try:
            stages = {"ae01": TINY_STAGE, "ae02": TINY_STAGE, "ae03": TINY_STAGE}
            parent = launch(kind="pretrain", dataset="demo-tiny", params=stages)
            parent = finished(parent.id, machines)
            assert parent.status == "succeeded", (parent.error, one.output(), two.output())
            [trainer] = [m for m in machines if m.ran(parent.worker_host)]
            [other] = [m for m in machines if m is not trainer]
            # The machine that trained the parent goes away; the other carries on alone.
            trainer.stop()
            child_params = {"encoder": "single", "epochs": 1, "batch_size": 50}
            kids = [
                launch(
                    kind="finetune",
                    dataset="demo-tiny",
                    parent_run_id=parent.id,
                    params={**child_params, "seed": seed},
                )
                for seed in (0, 1)
            ]
            kids = [finished(kid.id, [other]) for kid in kids]
            for kid in kids:
                assert kid.status == "succeeded", (kid.error, kid.traceback, other.output())
                assert other.ran(kid.worker_host), (kid.worker_host, parent.worker_host)
            assert kids[0].worker_host != parent.worker_host
            with session_scope() as session:
                stored = {
                    a.name: a.sha256
                    for a in artifacts_service.list_run_artifacts(session, parent.id)
                }
        finally:
            for machine in machines:
                machine.stop(timeout=30)

    # The parent's weights reached the other machine from the database, into its own cache:
    # the bytes the parent stored, in a folder the trainer never shared.
    fetched = other.data_dir / "cache" / "runs" / str(parent.id)
    files = sorted(p for p in fetched.glob("*") if p.is_file())
    assert files, f"nothing of run {parent.id} in {other.name}'s cache"
    for path in files:
        assert sha256(path) == stored[path.name], path.name
    assert not (trainer.data_dir / "cache" / "runs").exists()  # it trained them, never fetched
    # Each machine said which addresses it joined, and got the data set from the database
    # into its own cache.
    for machine in machines:
        assert "database: postgresql" in machine.output()
        assert f"queue:    {addresses['REDIS_URL']}" in machine.output()
        assert list((machine.data_dir / "cache" / "datasets").glob("*.npz")), machine.name
