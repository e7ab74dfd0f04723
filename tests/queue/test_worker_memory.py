"""A worker that does not grow: Celery's own safety nets come from the settings, and a run
records its process's memory (and CPU, and GPU where there is one) as time series (run
samples), never as epochs."""

from __future__ import annotations

import os
import uuid

import pytest
from celery import Celery

from store import queue
from store.db import session_scope
from store.queue import configure
from store.runs import metrics as metrics_service
from store.runs import samples as samples_service
from store.settings import Settings, get_settings
from tests.queue.test_queue import finished, launch
from tests.stack import Workers, wait_for


def test_worker_child_recycling_comes_from_the_settings(monkeypatch):
    monkeypatch.setenv("STACKLAB_WORKER_MAX_MEMORY_MB", "3000")
    monkeypatch.setenv("STACKLAB_WORKER_MAX_TASKS_PER_CHILD", "7")
    conf = configure(Celery("t"), Settings()).conf
    assert conf.worker_max_memory_per_child == 3000 * 1024  # Celery counts KiB
    assert conf.worker_max_tasks_per_child == 7
    defaults = configure(Celery("t"), Settings(_env_file=None)).conf
    assert defaults.worker_max_memory_per_child and defaults.worker_max_tasks_per_child
    # 0 switches a net off (Celery's None), as the memory bench does.
    off = Settings(worker_max_memory_mb=0, worker_max_tasks_per_child=0)
    conf = configure(Celery("t"), off).conf
    assert conf.worker_max_memory_per_child is None and conf.worker_max_tasks_per_child is None


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["redis-postgres"], indirect=True)
def test_a_run_records_the_worker_process_memory_as_system_metrics(stack):
    run = launch(
        kind="finetune",
        dataset="demo-tiny",
        params={"encoder": "scratch", "architecture": "single", "epochs": 1, "batch_size": 50},
    )[0]
    run = finished(run.id)
    assert run.status == "succeeded", run.error
    with session_scope() as session:
        series = metrics_service.series(session, run.id)
        samples = samples_service.series(session, run.id)
    rss = samples["rss_mb"]
    assert rss.seconds[0] == 0 and all(value > 50 for value in rss.values)  # MiB of TF
    assert set(rss.attempts) == {1}
    assert "gpu_util" not in samples  # a CPU worker: the GPU series are absent
    assert all(key.startswith("finetune/") for key in series)  # epochs only
    assert [step for step, _ in series["finetune/val_loss"]] == [1]


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["redis-postgres"], indirect=True)
def test_a_recycled_pool_child_is_replaced_and_takes_the_next_job(stack, monkeypatch, tmp_path):
    """Celery replaces the child after STACKLAB_WORKER_MAX_TASKS_PER_CHILD jobs; the new
    child (which loads TensorFlow again) runs the next one."""
    queue_name = f"recycle-{uuid.uuid4().hex[:8]}"  # only this worker listens to it
    monkeypatch.setenv("STACKLAB_QUEUE", queue_name)
    get_settings.cache_clear()
    queue.client.cache_clear()  # the sender's Celery app names its queue
    env = {
        **os.environ,
        "STACKLAB_WORKER_MAX_TASKS_PER_CHILD": "1",
        "STACKLAB_WORKER_NAME": "recycler",
    }
    workers = Workers(env, tmp_path)
    workers.start("recycler")
    params = {"encoder": "scratch", "architecture": "single", "epochs": 1, "batch_size": 50}
    try:
        # Launch only once its child is up: the other workers re-send a run left waiting.
        first = wait_for(lambda: recycler_online(), timeout=90, what="the recycler's child")
        run = finished(launch(kind="finetune", dataset="demo-tiny", params=params)[0].id)
        assert run.status == "succeeded", run.error
        assert run.worker_host == first  # recycler@host:pid of its pool child
        # The child exits after its one job; Celery starts another in its place.
        second = wait_for(
            lambda: recycler_online(besides=first), timeout=90, what="a new pool child"
        )
        run = finished(launch(kind="finetune", dataset="demo-tiny", params=params)[0].id)
        assert run.status == "succeeded", run.error
        assert run.worker_host == second != first
    finally:
        workers.stop_all(timeout=10)
        monkeypatch.undo()
        get_settings.cache_clear()
        queue.client.cache_clear()


def recycler_online(besides: str | None = None) -> str | None:
    """The name (recycler@host:pid) of the recycling worker's child that is online now."""
    from store.workers import service as workers_service

    with session_scope() as session:
        names = [w.name for w in workers_service.online(session, within_seconds=2)]
    return next((n for n in names if n.startswith("recycler@") and n != besides), None)
