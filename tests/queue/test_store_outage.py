"""The database refuses every connection for 20 s while a run trains: the run goes on.

Every process (two workers and this test) reaches PostgreSQL through a TCP proxy that the
test switches off and on, as a database restart or a network blip would.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from tests.chaos import TcpProxy
from tests.queue.stack import (
    FAST,
    REDIS_URL,
    Workers,
    create_pg_database,
    stack_env,
    wait_for,
)
from tests.queue.test_faults import SIX_EPOCHS, attempt_rows, checkpointed, steps
from tests.queue.test_queue import finished, launch, read, workers_online

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = 20


@pytest.fixture(scope="module")
def blinking_store(tmp_path_factory):
    url, drop = create_pg_database()
    data_dir = tmp_path_factory.mktemp("outage")
    with TcpProxy.for_url(url, 5432) as proxy:
        env = {
            "STACKLAB_DATA_DIR": str(data_dir),
            "STACKLAB_QUEUE": f"outage-{uuid.uuid4().hex[:8]}",
            "DATABASE_URL": proxy.rewrite(url),
            "REDIS_URL": REDIS_URL,
            **FAST,
        }
        with stack_env(env):
            from backend.db import upgrade_schema
            from worker.datasets import register
            from worker.ml.demo_data import make_demo

            upgrade_schema()
            register(make_demo(seed=0, n_train=200, n_test=50), name="demo-tiny")
            workers = Workers({**os.environ}, data_dir)
            workers.start("o1")
            workers.start("o2")  # idle: its upkeep must not give the busy one up for dead
            try:
                yield {"proxy": proxy, "workers": workers, "logs": data_dir}
            finally:
                proxy.restore()
                workers.stop_all()
    drop()


def test_a_20_s_database_outage_mid_run_loses_nothing_and_ends_nothing(blinking_store):
    proxy = blinking_store["proxy"]
    wait_for(lambda: workers_online() >= 2, timeout=120, what="two workers online")
    run = launch(kind="finetune", dataset="demo-tiny", params={**SIX_EPOCHS, "epochs": 4})[0]
    wait_for(lambda: checkpointed(run.id, 1), timeout=120, what="epoch 1 stored")
    proxy.refuse()
    time.sleep(OUTAGE_SECONDS)  # training goes on; its writes wait in memory
    proxy.restore()
    done = finished(run.id, timeout=180)
    assert done.status == "succeeded", (done.error, done.traceback)
    assert steps(run.id) == [1, 2, 3, 4]  # no epoch lost, none twice
    assert [(a.number, a.outcome) for a in attempt_rows(run.id)] == [(1, "succeeded")]
    log = "".join(p.read_text() for p in blinking_store["logs"].glob("o*.log"))
    assert "store unreachable, buffering" in log
    assert read(run.id).result["training"]["epochs_run"] == 4
