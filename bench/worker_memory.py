"""Does a worker grow job over job? The pool child's resident memory after each of N jobs.

One real Celery worker process (started as the queue tests start theirs, on the embedded
defaults: SQLite store and queue in a temporary folder, or Redis + PostgreSQL with
--stack redis-postgres), a small demo data set, then N small jobs one after the other:
tiny pretrains and finetunes (scratch, stacked and single; one with augmentation) in turn.
After each job has finished, the RSS (VmRSS in /proc) of the worker's pool child, the
process that imported TensorFlow and trained.

Celery's own safety nets (STACKLAB_WORKER_MAX_TASKS_PER_CHILD, ..._MAX_MEMORY_MB) are
switched off here, so the child is never replaced and what is measured is the growth itself;
a replaced child would show as a new pid.

    python bench/worker_memory.py [--jobs 20] [--train 400] [--stack embedded]

Last line of stdout: one JSON object (rss_mb per job, growth per job after the warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobspec.status import RunStatus  # noqa: E402
from tests.stack import (  # noqa: E402
    FAST,
    REDIS_URL,
    Workers,
    create_pg_database,
    pool_children,
    rss_mb,
    stack_env,
    wait_for,
)

DATASET = "bench-memory"
STAGE = {"epochs": 1, "batch_size": 50}
JOBS = (
    ("pretrain", {"ae01": STAGE, "ae02": STAGE, "ae03": STAGE}),
    ("finetune", {"encoder": "scratch", "epochs": 2, "batch_size": 50}),
    ("finetune", {"encoder": "scratch", "architecture": "single", "epochs": 2, "batch_size": 50}),
    ("finetune", {"encoder": "scratch", "epochs": 1, "batch_size": 50, "augment": True}),
)
WARM_UP = 4  # jobs before growth counts: first compilations, caches that fill once


def launch(kind: str, params: dict) -> int:
    from store.db import session_scope
    from store.runs import launch as launcher
    from store.runs.schemas import RunCreate

    with session_scope() as session:
        run_in = RunCreate(kind=kind, dataset=DATASET, params=params)
        return launcher.launch(session=session, run_in=run_in)[0].id


def status(run_id: int) -> tuple[str, str | None]:
    from store.db import session_scope
    from store.runs.models import Run

    with session_scope() as session:
        run = session.get(Run, run_id)
        return run.status, run.error


def measure(jobs: int, worker_pid: int) -> list[dict]:
    rows = []
    for i in range(jobs):
        kind, params = JOBS[i % len(JOBS)]
        started = time.monotonic()
        run_id = launch(kind, params)
        state, error = wait_for(
            lambda run_id=run_id: (s := status(run_id))[0] in RunStatus.finished() and s,
            timeout=600,
            what=f"run {run_id}",
            every=0.2,
        )
        if state != RunStatus.SUCCEEDED:
            raise SystemExit(f"run {run_id} ({kind}) {state}: {error}")
        time.sleep(0.5)  # the task returns after the run's final write: let it finish
        child = pool_children(worker_pid)
        pid = child[0] if child else None
        rows.append(
            {
                "job": i + 1,
                "kind": kind + ("+aug" if params.get("augment") else ""),
                "seconds": round(time.monotonic() - started, 1),
                "child": pid,
                "rss_mb": round(rss_mb(pid), 1) if pid else None,
            }
        )
        row = rows[-1]
        print(
            f"{row['job']:>3}  {row['kind']:<13} {row['seconds']:>6.1f} s  pid {row['child']}"
            f"  {row['rss_mb']:>7.1f} MB",
            flush=True,
        )
    return rows


def growth_per_job(rows: list[dict]) -> float | None:
    """Least-squares slope of RSS over the jobs after the warm-up, MB per job."""
    points = [(r["job"], r["rss_mb"]) for r in rows[WARM_UP:] if r["rss_mb"] is not None]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return round(num / den, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--train", type=int, default=400, help="demo training images")
    parser.add_argument("--stack", choices=("embedded", "redis-postgres"), default="embedded")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stacklab-memory-") as tmp:
        data_dir = Path(tmp)
        env = {
            "STACKLAB_DATA_DIR": str(data_dir),
            "STACKLAB_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
            **FAST,
            "STACKLAB_WORKER_MAX_TASKS_PER_CHILD": "0",
            "STACKLAB_WORKER_MAX_MEMORY_MB": "0",
        }
        drop = None
        if args.stack == "redis-postgres":
            url, drop = create_pg_database()
            env |= {"DATABASE_URL": url, "REDIS_URL": REDIS_URL}
        try:
            with stack_env(env):
                rows = _run(args, data_dir)
        finally:
            if drop:
                drop()

    growth = growth_per_job(rows)
    first, last = rows[0]["rss_mb"], rows[-1]["rss_mb"]
    print(f"\nRSS after job 1: {first} MB, after job {len(rows)}: {last} MB")
    print(f"growth per job after the first {WARM_UP} (least squares): {growth} MB")
    print(
        json.dumps(
            {
                "bench": "worker_memory",
                "jobs": len(rows),
                "train_images": args.train,
                "stack": args.stack,
                "rss_mb": [r["rss_mb"] for r in rows],
                "children": sorted({r["child"] for r in rows if r["child"]}),
                "first_mb": first,
                "last_mb": last,
                "growth_mb_per_job": growth,
                "cpus": os.cpu_count(),
            }
        )
    )


def _run(args, data_dir: Path) -> list[dict]:
    from store import queue
    from store.db import upgrade_schema
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    upgrade_schema()
    register(make_demo(seed=0, n_train=args.train, n_test=100), name=DATASET)
    queue.declare()
    workers = Workers({**os.environ}, data_dir)
    proc = workers.start("memory")
    try:
        wait_for(lambda: pool_children(proc.pid), timeout=120, what="the worker's pool child")
        print(f"worker pid {proc.pid}, log {data_dir / 'memory.log'}")
        print("job  kind          seconds  child      RSS")
        return measure(args.jobs, proc.pid)
    except BaseException:
        print((data_dir / "memory.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        workers.stop_all(timeout=10)


if __name__ == "__main__":
    main()
