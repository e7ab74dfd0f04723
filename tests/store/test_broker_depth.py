"""store.queue.waiting: what the broker holds for a lane, on the embedded queue and on a
real Redis, which bounds the upkeep's re-sends (tests/store/test_lifecycle.py)."""

from __future__ import annotations

import uuid

import pytest
import redis

from jobspec.scheduling import Lane
from tests.stack import REDIS_URL, reset_process_state, stack_env


@pytest.fixture(params=["embedded", "redis"])
def broker(request, tmp_path):
    queue_name = f"depth-{uuid.uuid4().hex[:8]}"
    env = {
        "STACKLAB_DATA_DIR": str(tmp_path),
        "STACKLAB_QUEUE": queue_name,
        "STACKLAB_CPU_QUEUE": f"{queue_name}-cpu",
        "STACKLAB_BROKER_TIMEOUT_SECONDS": "2",
    }
    if request.param == "redis":
        env["REDIS_URL"] = REDIS_URL
    with stack_env(env):
        reset_process_state()
        yield request.param
        if request.param == "redis":
            client = redis.Redis.from_url(REDIS_URL)
            client.delete(queue_name, f"{queue_name}-cpu")
    reset_process_state()


def test_the_broker_says_how_many_wakes_wait_in_each_lane(broker):
    from store import queue

    assert queue.waiting(Lane.TRAINING) == 0
    for run_id in (1, 2, 3):
        queue.enqueue("pretrain", run_id)
    queue.enqueue(queue.IMPORT, 7)
    assert queue.waiting(Lane.TRAINING) == 3
    assert queue.waiting(Lane.CPU) == 1


def test_an_unreachable_broker_cannot_say(monkeypatch):
    from store import queue

    with stack_env({"REDIS_URL": "redis://127.0.0.1:1/0", "STACKLAB_BROKER_TIMEOUT_SECONDS": "1"}):
        reset_process_state()
        assert queue.waiting(Lane.TRAINING) is None
    reset_process_state()
