"""How long a quick finetune on the built-in `demo` takes, from launch to its stored result.

Issue 10 item 3 asked that a quick run (a sample of demo's 5,000 training images, a few
batches an epoch: the settings tests/browser/test_forms.py submits from the form) be done
in under a minute on 2 CPU cores. The test checks what the run does; this measures how long
it takes, on the embedded defaults (SQLite, no Redis) with ONE real Celery worker started
the way the tests start theirs.

    python bench/quick_run.py [--repeats 3]

Per repeat: launch through store.runs.launch, wait until the run has finished, and report
finished_at - created_at (the database's clock) and the wall time this process saw. The
worker is started (and its Keras start-up paid) before the first launch.
Last line of stdout: one JSON object with the figures in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.stack import FAST, Workers, stack_env, wait_for  # noqa: E402

# What the form sends for the quick run of tests/browser/test_forms.py.
QUICK = {
    "encoder": "scratch",
    "epochs": 2,
    "batch_size": 64,
    "max_train_images": 500,
    "steps_per_epoch": 4,
    "bn_momentum": 0.9,
}


def launch_quick(repeat: int) -> int:
    """The quick finetune, committed and sent; its id."""
    from store.db import session_scope
    from store.runs import launch as launcher
    from store.runs.schemas import RunCreate

    request = RunCreate(kind="finetune", dataset="demo", name=f"quick {repeat}", params=QUICK)
    with session_scope() as session:
        [run] = launcher.launch(session=session, run_in=request)
        return run.id


def finished(run_id: int) -> tuple[str, float] | None:
    """(status, finished_at - created_at in seconds) once the run has finished, else None."""
    from jobspec.status import RunStatus
    from store.db import session_scope
    from store.runs.models import Run

    with session_scope() as session:
        run = session.get(Run, run_id)
        if run.status not in RunStatus.finished():
            return None
        return run.status, (run.finished_at - run.created_at).total_seconds()


def worker_ready() -> bool:
    from store.db import session_scope
    from store.workers import service as workers_service

    with session_scope() as session:
        return bool(workers_service.online(session, within_seconds=5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        env = {**FAST, "STACKLAB_DATA_DIR": tmp, "STACKLAB_QUEUE": f"bench-{uuid.uuid4().hex[:8]}"}
        with stack_env(env):
            from store.db import upgrade_schema
            from worker.datasets import register
            from worker.ml.datasets.demo import make_demo

            upgrade_schema()
            register(make_demo(seed=0), name="demo")
            workers = Workers({**os.environ}, Path(tmp))
            workers.start("bench")
            try:
                wait_for(worker_ready, timeout=180, what="the worker")
                for repeat in range(args.repeats):
                    start = time.perf_counter()
                    run_id = launch_quick(repeat)
                    status, stored = wait_for(
                        lambda run_id=run_id: finished(run_id),
                        timeout=600,
                        what=f"run {run_id}",
                        every=0.05,
                    )
                    wall = time.perf_counter() - start
                    rows.append({"status": status, "seconds": stored, "wall_seconds": wall})
                    print(f"repeat {repeat}: {status} in {stored:.1f} s (wall {wall:.1f} s)")
            finally:
                workers.stop_all()
    seconds = [row["seconds"] for row in rows]
    print(
        json.dumps(
            {
                "bench": "quick_run",
                "params": QUICK,
                "runs": rows,
                "median_seconds": statistics.median(seconds),
                "max_seconds": max(seconds),
                "under_a_minute": all(s < 60 for s in seconds),
            }
        )
    )


if __name__ == "__main__":
    main()
