"""The worker's Celery app: `celery -A worker.celery_app worker`.

TensorFlow is not fork-safe, so it is imported in the pool child that runs the tasks
(worker_process_init), once per child, never in the parent that forks. A CPU-lane worker
(STACKLAB_WORKER_LANE=cpu: imports, "evaluate now") hides the GPUs and does not import it
at start at all.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutting_down

from store.db import get_engine, reset_caches, upgrade_schema
from store.queue import configure
from store.settings import get_settings
from worker import device, liveness, runner

log = logging.getLogger(__name__)

device.hide_gpus_on_cpu_lane()  # before anything imports TensorFlow, here or in a child
app = configure(Celery("stacklab", include=["worker.tasks"]), get_settings())


@worker_process_init.connect
def _warm_up_child(**_kwargs: object) -> None:
    # Never share the parent's pooled connections with a forked child.
    get_engine().dispose(close=False)
    reset_caches()

    device.prepare()  # imports TensorFlow/Keras once (not on the CPU lane), GPU growth
    capacity = runner.capacity()
    # Reports in, reaps dead workers' runs, sets runs aside and re-sends lost messages,
    # even while idle.
    liveness.start_upkeep(
        worker=device.worker_name(),
        device=device.describe(),
        lane=capacity.lane,
        gpu_memory_mb=capacity.gpu_memory_mb,
    )
    log.info("stacklab worker child ready on %s (%s)", device.describe(), capacity.lane.label)


@worker_ready.connect
def _on_ready(**_kwargs: object) -> None:
    upgrade_schema()


@worker_shutting_down.connect
def _on_shutdown(**_kwargs: object) -> None:
    liveness.forward_stop_to_children()  # their running runs go back to the queue
