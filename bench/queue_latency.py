"""Queue latency (enqueue -> task start) and the cost of one epoch's metric writes.

Two set-ups, one after the other in this process, each with ONE real Celery worker process
started the way the queue tests start theirs:
  redis+postgres  a fresh PostgreSQL database and Redis as the broker
  embedded        the defaults: SQLite store and kombu's SQLAlchemy transport on SQLite,
                  which an idle worker polls every STACKLAB_EMBEDDED_POLL_SECONDS

(a) start latency: launch a tiny pretrain run through store.runs.launch, read
    started_at - created_at from its row (and the wall time from just before launch() until
    started_at is seen), cancel it, and wait until the worker is idle again.
(b) metric writes: store.runs.metrics.log_epoch, one epoch of 6 values in its own
    session_scope(), as the worker's recorder writes them.

    python bench/queue_latency.py [--runs 8] [--writes 200]

Needs PostgreSQL and Redis (STACKLAB_TEST_PG, STACKLAB_TEST_REDIS as for the queue tests).
Last line of stdout: one JSON object with the figures, including "ratio" (embedded median
start latency / redis+postgres median start latency).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.stack import (  # noqa: E402
    FAST,
    REDIS_URL,
    Workers,
    create_pg_database,
    stack_env,
)
from tests.stack import wait_for as _wait_for  # noqa: E402

SETUPS = ("redis+postgres", "embedded")
DATASET = "bench-tiny"
TINY_STAGE = {"epochs": 1, "batch_size": 50}
PARAMS = {"ae01": TINY_STAGE, "ae02": TINY_STAGE, "ae03": TINY_STAGE, "bn_momentum": 0.9}
EPOCH = ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate", "epoch_seconds")
POLL = 0.005  # how often this process looks for started_at: the resolution of the wall time
SETTLE = 0.2  # seconds, at least, between a task's end and the next launch


class Stack:
    """One set-up's environment and its worker; the worker log explains a failure."""

    def __init__(self, data_dir: Path):
        self.workers = Workers({**os.environ}, data_dir)
        self.proc = self.workers.start("bench")
        self.log = data_dir / "bench.log"

    def wait_for(self, predicate: Callable[[], object], *, timeout: float, what: str):
        """wait_for, failing at once (with the worker's log) if the worker died."""

        def alive_and(predicate=predicate):
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{self.log_tail()}")
            return predicate()

        return _wait_for(alive_and, timeout=timeout, what=what, every=POLL)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def task_returned(self, task_id: str) -> bool:
        """Celery logged the task's end: the worker acks it and takes the next message."""
        return f"[{task_id}] succeeded" in self.log.read_text(errors="replace")


@contextlib.contextmanager
def stack(kind: str) -> Iterator[Stack]:
    """Environment, schema, a tiny data set and one worker, as tests/queue/conftest.py does."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    drop = None
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        try:
            env = {**FAST, "STACKLAB_DATA_DIR": tmp, "STACKLAB_QUEUE": queue}
            if kind == "redis+postgres":
                env["DATABASE_URL"], drop = create_pg_database()
                env["REDIS_URL"] = REDIS_URL
            with stack_env(env):
                _prepare_store()
                current = Stack(Path(tmp))
                try:
                    yield current
                finally:
                    current.workers.stop_all()
        finally:
            if drop:
                drop()
            if kind == "redis+postgres":
                _forget_redis_queue(queue)


def _forget_redis_queue(queue: str) -> None:
    # kombu leaves the queue's bindings in Redis; this queue name is ours alone.
    import redis

    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(REDIS_URL) as client:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def _prepare_store() -> None:
    from store.db import upgrade_schema
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    upgrade_schema()
    register(make_demo(n_train=100, n_test=20), name=DATASET)


def launch_run(name: str) -> tuple[int, str]:
    """A tiny pretrain run, committed and queued; its id and task id."""
    from store.db import session_scope
    from store.runs import launch as launcher
    from store.runs.schemas import RunCreate

    request = RunCreate(kind="pretrain", dataset=DATASET, name=name, params=PARAMS)
    with session_scope() as session:
        [run] = launcher.launch(session=session, run_in=request)
        return run.id, run.task_id


def run_times(run_id: int) -> tuple[str, object, object]:
    """(status, created_at, started_at), read fresh."""
    from sqlalchemy import select

    from store.db import session_scope
    from store.runs.models import Run

    with session_scope() as session:
        return tuple(
            session.execute(
                select(Run.status, Run.created_at, Run.started_at).where(Run.id == run_id)
            ).one()
        )


def finish(current: Stack, run_id: int, task_id: str, *, cancel: bool) -> str:
    """Cancel (if asked), wait for the run to end and for the worker to be idle again."""
    from jobspec.status import RunStatus
    from store.db import session_scope
    from store.errors import InvalidRequest
    from store.runs import launch as launcher

    if cancel:
        with contextlib.suppress(InvalidRequest), session_scope() as session:
            launcher.cancel(session=session, run_id=run_id)  # it may have finished already
    status = current.wait_for(
        lambda: (s := run_times(run_id)[0]) in RunStatus.finished() and s,
        timeout=240,
        what=f"run {run_id} to finish",
    )
    current.wait_for(
        lambda: current.task_returned(task_id), timeout=60, what=f"task {task_id} to return"
    )
    # Time for the ack and the next fetch; the jitter spreads launches over an embedded
    # worker's polling cycle instead of meeting it at one phase.
    time.sleep(SETTLE + random.uniform(0, SETTLE))
    return status


def start_latency(current: Stack, runs: int) -> dict:
    """Launch, see it start, cancel, wait for idle; runs times. Milliseconds."""
    from store.timeutil import aware

    db_ms, wall_ms, launch_ms, statuses = [], [], [], []
    for i in range(runs):
        before = time.time()
        run_id, task_id = launch_run(f"latency {i}")
        launch_ms.append((time.time() - before) * 1000)
        _, created, started = current.wait_for(
            lambda run_id=run_id: (t := run_times(run_id))[2] is not None and t,
            timeout=60,
            what=f"run {run_id} to start",
        )
        wall_ms.append((time.time() - before) * 1000)
        db_ms.append((aware(started) - aware(created)).total_seconds() * 1000)
        statuses.append(finish(current, run_id, task_id, cancel=True))
    return {"db_ms": db_ms, "wall_ms": wall_ms, "launch_ms": launch_ms, "statuses": statuses}


def write_cost(run_id: int, writes: int, warm_up: int = 5) -> list[float]:
    """Milliseconds per log_epoch of len(EPOCH) values in its own session_scope()."""
    from store.db import session_scope
    from store.runs.metrics import log_epoch

    samples = []
    for step in range(warm_up + writes):
        values = {key: 1.0 / (step + 1 + i) for i, key in enumerate(EPOCH)}
        start = time.perf_counter()
        with session_scope() as session:
            log_epoch(session=session, run_id=run_id, stage="bench", step=step, values=values)
        if step >= warm_up:
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def spread(samples: list[float]) -> dict:
    """Median and 95th percentile (inclusive, interpolated), in the samples' unit."""
    if len(samples) == 1:
        return {"median": samples[0], "p95": samples[0]}
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[-1]
    return {"median": statistics.median(samples), "p95": p95}


def bench(kind: str, runs: int, writes: int) -> dict:
    """Both measurements on one set-up."""
    from store.settings import get_settings

    with stack(kind) as current:
        settings = get_settings()
        start = time.monotonic()
        run_id, task_id = launch_run("warm-up")  # worker boot, TensorFlow import, first graph
        warm_status = finish(current, run_id, task_id, cancel=False)
        warm_s = time.monotonic() - start
        latency = start_latency(current, runs)
        per_epoch = write_cost(run_id, writes)
    return {
        "database": settings.sqlalchemy_url.split(":", 1)[0],
        "broker": settings.celery_broker_url.split(":", 1)[0],
        "poll_seconds": settings.embedded_poll_seconds if settings.embedded_broker else None,
        "warm_up_seconds": warm_s,
        "warm_up_status": warm_status,
        "start_db_ms": spread(latency["db_ms"]),
        "start_db_samples_ms": latency["db_ms"],
        "start_wall_ms": spread(latency["wall_ms"]),
        "launch_call_ms": spread(latency["launch_ms"]),
        "statuses": latency["statuses"],
        "write_epoch_ms": spread(per_epoch),
        "write_value_ms": spread([ms / len(EPOCH) for ms in per_epoch]),
    }


def print_table(results: dict, args) -> None:
    rows = [
        ("start latency, started_at - created_at", "start_db_ms"),
        ("start latency, wall (launch() -> seen)", "start_wall_ms"),
        ("  of which the launch() call itself", "launch_call_ms"),
        (f"metric write, one epoch ({len(EPOCH)} values)", "write_epoch_ms"),
        ("metric write, per value", "write_value_ms"),
    ]
    head = "".join(f"{kind + ' med':>18}{'p95':>9}" for kind in results)
    print(f"\n{'ms':<42}{head}")
    for label, key in rows:
        cells = "".join(f"{r[key]['median']:>18.2f}{r[key]['p95']:>9.2f}" for r in results.values())
        print(f"{label:<42}{cells}")
    for kind, r in results.items():
        poll = f", idle worker polls every {r['poll_seconds']} s" if r["poll_seconds"] else ""
        print(
            f"{kind}: {r['database']} store, {r['broker']} broker{poll}; worker ready in "
            f"{r['warm_up_seconds']:.1f} s; runs ended {sorted(set(r['statuses']))}"
        )
    print(f"{args.runs} launches, {args.writes} epoch writes per set-up; wall resolution {POLL} s")


def main() -> None:
    random.seed(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="launches timed per set-up")
    parser.add_argument("--writes", type=int, default=200, help="epoch writes timed per set-up")
    args = parser.parse_args()
    if args.runs < 1 or args.writes < 1:
        parser.error("--runs and --writes must be at least 1")

    results = {kind: bench(kind, args.runs, args.writes) for kind in SETUPS}
    print_table(results, args)
    redis, embedded = results["redis+postgres"], results["embedded"]
    ratio = embedded["start_db_ms"]["median"] / redis["start_db_ms"]["median"]
    print(f"ratio (embedded / redis+postgres, median start latency): {ratio:.2f}")
    figures = {
        kind.replace("+", "_"): {k: v for k, v in r.items() if k != "statuses"}
        for kind, r in results.items()
    }
    print(json.dumps(_rounded({"bench": "queue_latency", **vars(args), **figures, "ratio": ratio})))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


if __name__ == "__main__":
    main()
