"""The embedded store's disk fills up mid-run (SQLite's own SQLITE_FULL: the switch file sets
each connection's page limit at the file's size and the test uses up its free pages), with
a real worker and the web: the run fails saying the disk is full (never "worker died"),
/api/ready and launches name the cause, and after space returns a re-queue resumes from
the checkpoint the run had published before the fault."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from store import queue
from store.db import session_scope
from store.runs import service as runs_service
from tests.fault_switch import sitecustomize as fault_switch
from tests.fault_switch.sitecustomize import fill_free_pages
from tests.queue.test_faults import SIX_EPOCHS, checkpointed, steps
from tests.queue.test_queue import finished, launch, read
from tests.stack import FAST, Workers, stack_env, start_web, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """SQLite store and queue, one worker and the web, all with the disk-full switch."""
    data_dir = tmp_path_factory.mktemp("full-disk")
    flag = data_dir / "disk-full"
    env = {
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
        **FAST,
    }
    with stack_env(env), pytest.MonkeyPatch.context() as patch:
        patch.setenv("STACKLAB_TEST_DISK_FULL_FILE", str(flag))
        patch.setenv("STACKLAB_STORE_PROBE_SECONDS", "0")
        fault_switch.install()  # this process too: the test's own sessions see the fault
        from store.db import get_settings, reset_caches, upgrade_schema
        from worker.datasets import register
        from worker.ml.datasets.demo import make_demo

        reset_caches()
        upgrade_schema()
        register(make_demo(seed=0, n_train=200, n_test=50), name="demo-tiny")
        queue.declare()
        started = fault_switch.env_for_processes({**os.environ})  # SQLite refuses in them
        workers = Workers(started, data_dir)
        workers.start("w1")
        web = start_web(started, log=data_dir / "web.log")
        db = Path(get_settings().sqlalchemy_url.removeprefix("sqlite:///"))
        try:
            yield {"flag": flag, "db": db, "web": web, "workers": workers, "dir": data_dir}
        finally:
            flag.unlink(missing_ok=True)
            web.stop()
            workers.stop_all(timeout=5)


def worker_log(stack) -> str:
    return (stack["dir"] / "w1.log").read_text()


def test_a_full_disk_fails_the_run_saying_so_and_a_requeue_resumes_its_checkpoint(embedded):
    api = httpx.Client(base_url=embedded["web"].url, timeout=30)
    run = launch(kind="finetune", dataset="demo-tiny", params={**SIX_EPOCHS, "epochs": 12})[0]
    wait_for(lambda: checkpointed(run.id, 2), timeout=180, what="epoch 2 stored")
    embedded["flag"].touch()  # from each connection's next checkout: no new page
    fill_free_pages(embedded["db"])  # and none left inside the file

    ready = wait_for(
        lambda: (r := api.get("/api/ready")).status_code == 503 and r,
        timeout=30,
        what="/api/ready to say the store cannot write",
    ).json()
    assert ready["database_fault"] == "disk_full", ready
    assert "The store's disk is full" in ready["detail"]
    refused = api.post("/api/runs", json={"kind": "finetune", "dataset": "demo-tiny"})
    assert refused.status_code == 507 and "disk is full" in refused.json()["detail"]
    page = api.get("/runs", headers={"accept": "text/html"})
    assert "The store cannot write" in page.text

    # The run stops at its first refused write: failed saying why, or (when even its tiny
    # failure record needs a page the file lacks) still retrying that record while the
    # store is shown as unable to write; never given up for dead.
    wait_for(
        lambda: (
            read(run.id).status == "failed"
            or f"run {run.id}: the store's disk is full; recording the failure alone"
            in worker_log(embedded)
        ),
        timeout=120,
        what="the run to stop on the full disk",
    )
    kept = read(run.id).checkpoint or {}
    embedded["flag"].unlink()  # space again
    done = finished(run.id, timeout=120)
    assert done.status == "failed"
    assert done.error.startswith("The store refused a write: the store's disk is full"), done.error
    epoch = kept["epoch"]
    assert done.error.endswith(f"re-queue to resume from epoch {epoch}."), done.error
    assert done.checkpoint["epoch"] == epoch  # the last published checkpoint stayed
    with session_scope() as session:
        ends = [(a.number, a.outcome) for a in runs_service.list_attempts(session, run.id)]
    assert ends == [(1, "failed")]  # never "lost": nobody called it a dead worker
    assert "worker died" not in done.error

    wait_for(lambda: api.get("/api/ready").status_code == 200, timeout=30, what="ready again")
    requeued = api.post(f"/api/runs/{run.id}/requeue")
    assert requeued.status_code == 200, requeued.text
    again = finished(run.id, timeout=300)
    assert again.status == "succeeded", again.error
    with session_scope() as session:
        rows = runs_service.list_attempts(session, run.id)
        assert [(a.number, a.outcome) for a in rows] == [(1, "failed"), (2, "succeeded")]
        assert rows[1].resumed_from["epoch"] == epoch
    assert steps(run.id) == list(range(1, 13))
