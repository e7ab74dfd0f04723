"""Scheduler bench (issue 21): what the one rule costs a claim, and how fast urgent work
gets in.

(a) claim latency. A store holding --sizes queued runs (mixed priorities, 4 token names and
    the open site, a tenth with a parent, a fifth needing a GPU, a few with a minimum GPU
    memory; a few runs running and a start history per name), on SQLite and on PostgreSQL
    (a database created for the bench and dropped after, or --pg-url). Timed, each in its
    own session and transaction, then rolled back so the queue keeps its size:
      claim_next   store.scheduler.claim_next, alternately for a CPU and a GPU worker
      baseline     the old way: store.runs.attempts.claim of a given queued id (no ranking)
      plan         store.scheduler.plan over the queue for two workers (the panel's order),
                   from rows already read; and the rows' read (+ Shares) that feeds it
    Target: claim_next p95 < 20 ms on PostgreSQL.

(b) urgent start. One real Celery worker per --stack (embedded: SQLite and its SQLAlchemy
    transport; postgres: PostgreSQL and Redis), a low-priority scratch finetune training on
    tiny demo data (--train-images); once it has trained --warm-epochs epochs (past
    STACKLAB_PREEMPT_AFTER_SECONDS, --preempt-after, default 1 s), a priority-10 run is
    launched, and the time from its launch to its started_at (the database's clock) is
    measured next to the running run's epoch length (its epoch_seconds metric), with the
    steps between: the worker's upkeep marks the running run, it stops at its epoch's end
    and hands back (attempt outcome preempted), the worker claims the urgent run.
    Target: the running run's epoch in flight + 2 s.

    python bench/scheduler.py [--sizes 1000,10000] [--claims 200]
        [--stack sqlite|postgres|both] [--pg-url URL | --pg-admin-url URL]
        [--redis-url URL] [--skip-claims] [--skip-preempt] [--preempt-after 1]
        [--warm-epochs 3] [--train-images 500]

Never imports tests/: the bench makes its own database (CREATE DATABASE on --pg-admin-url,
default 127.0.0.1:5432 `postgres`, or STACKLAB_BENCH_PG) and starts its worker with
cli.processes' command line.

Last line of stdout: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
if str(HERE) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE))

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
OWNERS = ("ana", "ben", "cy", "dee", None)
PRIORITIES = (0,) * 14 + (5,) * 3 + (10,) + (-1,) * 2
DATASET = "bench-scheduler"
FAST_VARS = (
    "STACKLAB_HEARTBEAT_SECONDS",
    "STACKLAB_STALE_AFTER_SECONDS",
    "STACKLAB_PROGRESS_INTERVAL_SECONDS",
    "STACKLAB_EMBEDDED_POLL_SECONDS",
    "STACKLAB_RESEND_AFTER_SECONDS",
)
# What this bench sets for its own store; everything else is the caller's environment.
ENV_VARS = (
    "STACKLAB_DATA_DIR",
    "DATABASE_URL",
    "STACKLAB_QUEUE",
    "STACKLAB_CPU_QUEUE",
    "REDIS_URL",
    "STACKLAB_PREEMPT_AFTER_SECONDS",
    *FAST_VARS,
)
TARGET_CLAIM_P95_MS = 20.0
SLACK_S = 2.0  # (b)'s target: one epoch of the running run + this


def log(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --- a store of its own ---------------------------------------------------------------------


@contextlib.contextmanager
def store_env(env: dict[str, str]) -> Iterator[None]:
    """Run with these variables (and only these of ENV_VARS) set, caches forgotten."""
    from store import queue
    from store.db import reset_caches

    saved = {key: os.environ.pop(key, None) for key in ENV_VARS}
    os.environ.update(env)
    reset_caches()
    queue.client.cache_clear()
    try:
        yield
    finally:
        reset_caches()
        queue.client.cache_clear()
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


@contextlib.contextmanager
def pg_database(args: argparse.Namespace) -> Iterator[str]:
    """--pg-url as given, or a fresh database on --pg-admin-url's server, dropped after."""
    if args.pg_url:
        yield args.pg_url
        return
    import sqlalchemy as sa

    name = f"stacklab_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield args.pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def stack(kind: str, args: argparse.Namespace, **extra: str) -> Iterator[Path]:
    """A throw-away store (schema, a tiny data set) of this kind; yields its data folder."""
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-sched-") as tmp:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        env = {
            "STACKLAB_DATA_DIR": tmp,
            "STACKLAB_QUEUE": name,
            "STACKLAB_CPU_QUEUE": f"{name}-cpu",
        }
        with contextlib.ExitStack() as stop:
            if kind == "postgres":
                env["DATABASE_URL"] = stop.enter_context(pg_database(args))
            stop.enter_context(store_env({**env, **extra}))
            from store.db import upgrade_schema
            from worker.datasets import register
            from worker.ml.datasets.demo import make_demo

            upgrade_schema()
            register(make_demo(seed=0, n_train=args.train_images, n_test=40), name=DATASET)
            yield Path(tmp)


# --- (a) claim latency ----------------------------------------------------------------------


def fill_queue(size: int, rng: random.Random) -> list[int]:
    """`size` queued runs of the mix the docstring describes (plus history); their ids."""
    from sqlalchemy import insert, select

    from jobspec.status import RunStatus
    from store import clock
    from store.datasets.models import DatasetRecord
    from store.db import session_scope
    from store.runs.models import Run

    with session_scope() as session:
        now = clock.now(session)
        dataset_id = session.scalar(select(DatasetRecord.id).where(DatasetRecord.name == DATASET))
        common: dict[str, Any] = {
            "kind": "finetune",
            "params": {},
            "dataset_id": dataset_id,
            "seed": 0,
        }
        history = [  # a last start per name, and a few runs running now
            {
                **common,
                "name": f"history {i}",
                "launched_by": OWNERS[i % len(OWNERS)],
                "status": RunStatus.RUNNING if i < 3 else RunStatus.SUCCEEDED,
                "queued_at": now - timedelta(hours=2, seconds=i),
                "started_at": now - timedelta(minutes=30 + i),
            }
            for i in range(3 * len(OWNERS))
        ]
        session.execute(insert(Run), history)
        parents = list(session.scalars(select(Run.id)))
        ids: list[int] = []
        batch = 1000
        for start in range(0, size, batch):
            rows = []
            for i in range(start, min(size, start + batch)):
                parent = None
                if rng.random() < 0.1:  # half of them wait on a queued parent
                    parent = rng.choice(parents if rng.random() < 0.5 or not ids else ids)
                rows.append(
                    {
                        **common,
                        "name": f"queued {i}",
                        "status": RunStatus.QUEUED,
                        "priority": rng.choice(PRIORITIES),
                        "launched_by": rng.choice(OWNERS),
                        "queued_at": now - timedelta(seconds=size - i + rng.random()),
                        "parent_run_id": parent,
                        "needs_gpu": rng.random() < 0.2,
                        "min_gpu_memory_mb": rng.choice([16000, 40000])
                        if rng.random() < 0.05
                        else None,
                    }
                )
            ids += list(session.scalars(insert(Run).returning(Run.id), rows))
    return ids


def timed(action: Callable[[Any], object], samples: int) -> list[float]:
    """Milliseconds of `action(session)`, each in its own transaction, rolled back after."""
    from sqlalchemy.orm import Session

    from store.db import get_engine

    out = []
    for _ in range(samples):
        with Session(get_engine()) as session:
            start = time.perf_counter()
            action(session)
            out.append((time.perf_counter() - start) * 1000)
            session.rollback()
    return out


def claims(size: int, samples: int, rng: random.Random) -> dict[str, Any]:
    """claim_next and the baseline over a queue of `size`, and plan for the panel."""
    from jobspec.scheduling import Lane
    from store import scheduler
    from store.runs import attempts

    ids = fill_queue(size, rng)
    cpu = scheduler.Capacity(Lane.TRAINING)
    gpu = scheduler.Capacity(Lane.TRAINING, gpu=True, gpu_memory_mb=24000)
    workers = [cpu, gpu]
    picked: list[int | None] = []

    def claim_next(session) -> None:
        capacity = workers[len(picked) % 2]
        got = scheduler.claim_next(
            session, capacity, worker_host="bench", device="cpu", versions={}
        )
        picked.append(None if got is None else got.run_id)

    def claim_given(session) -> None:
        run_id = rng.choice(ids)
        attempts.claim(session=session, run_id=run_id, worker_host="b", device="cpu", versions={})

    timed(claim_next, 5)  # warm: connections, statements, the planner's statistics
    picked.clear()
    rule = timed(claim_next, samples)
    timed(claim_given, 5)
    base = timed(claim_given, samples)
    assert all(p is not None for p in picked), "a claim found nothing to take"
    return {
        "queued": size,
        "claim_next_ms": spread(rule),
        "baseline_claim_ms": spread(base),
        **plan_cost(),
    }


def plan_cost(repeats: int = 3) -> dict[str, Any]:
    """Milliseconds of the rows' read (+ Shares) and of scheduler.plan for two workers."""
    from jobspec.scheduling import Lane
    from jobspec.status import RunStatus
    from store import clock, scheduler
    from store.db import session_scope
    from store.runs.models import Run

    def read() -> tuple:
        with session_scope() as session:
            rows = list(session.query(Run).filter(Run.status == RunStatus.QUEUED))
            waiting = [
                scheduler.Waiting(
                    r.id,
                    r.launched_by,
                    r.priority,
                    r.queued_at,
                    r.kind,
                    r.needs_gpu,
                    r.min_gpu_memory_mb,
                    r.parent_run_id,
                    estimate=60.0,
                )
                for r in rows
            ]
            shares = scheduler.Shares.read(session, {r.launched_by for r in rows})
            queued = {r.id for r in rows}
            parents = {r.parent_run_id: None for r in rows if r.parent_run_id in queued}
            return waiting, shares, clock.now(session), parents

    read_ms, plan_ms, placed = [], [], 0
    slots = [
        scheduler.Slot("cpu", scheduler.Capacity(Lane.TRAINING)),
        scheduler.Slot("gpu", scheduler.Capacity(Lane.TRAINING, gpu=True, gpu_memory_mb=24000)),
    ]
    for _ in range(repeats):
        start = time.perf_counter()
        waiting, shares, now, parents = read()
        read_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        try:
            plan = scheduler.plan(
                waiting=waiting,
                busy=[],
                slots=slots,
                shares=shares,
                now=now,
                parents_running=parents,
            )
        except Exception as err:  # reported, not fatal: the claims are the main figure
            log(f"plan failed: {type(err).__name__}: {err}")
            return {"plan_read_ms": spread(read_ms), "plan_error": f"{type(err).__name__}: {err}"}
        plan_ms.append((time.perf_counter() - start) * 1000)
        placed = sum(p.place is not None for p in plan)
    return {"plan_read_ms": spread(read_ms), "plan_ms": spread(plan_ms), "plan_placed": placed}


def spread(samples: list[float]) -> dict[str, float]:
    """Median, 95th percentile (inclusive, interpolated) and maximum."""
    if len(samples) == 1:
        return {"p50": samples[0], "p95": samples[0], "max": samples[0]}
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[-1]
    return {"p50": statistics.median(samples), "p95": p95, "max": max(samples)}


def bench_claims(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in args.stacks:
        out[kind] = []
        for size in args.sizes:
            log(f"(a) {kind}: {size} queued runs")
            with stack(kind, args):
                out[kind].append(claims(size, args.claims, random.Random(size)))
    return out


# --- (b) an urgent run while a low-priority run trains -----------------------------------------

FAST = {  # short intervals, as the queue tests use: a beat every half second
    "STACKLAB_HEARTBEAT_SECONDS": "0.5",
    "STACKLAB_STALE_AFTER_SECONDS": "4",
    "STACKLAB_PROGRESS_INTERVAL_SECONDS": "0.2",
    "STACKLAB_EMBEDDED_POLL_SECONDS": "0.1",
    "STACKLAB_RESEND_AFTER_SECONDS": "3",
}
STAGE = "finetune"


def launch(name: str, *, priority: int, epochs: int, batch_size: int) -> int:
    """A scratch finetune (no early stop), committed and sent; its id."""
    from store.db import session_scope
    from store.runs import launch as launcher
    from store.runs.schemas import RunCreate

    params = {
        "encoder": "scratch",
        "epochs": epochs,
        "batch_size": batch_size,
        "early_stopping": {"patience": 1000},
    }
    request = RunCreate(
        kind="finetune", dataset=DATASET, name=name, params=params, priority=priority
    )
    with session_scope() as session:
        [run] = launcher.launch(session=session, run_in=request)
        return run.id


def read_run(run_id: int) -> dict[str, Any]:
    from store.db import session_scope
    from store.runs.models import Run, RunAttempt

    with session_scope() as session:
        run = session.get_one(Run, run_id)
        outcomes = [
            (a.number, str(a.outcome), a.ended_at)
            for a in session.query(RunAttempt).filter_by(run_id=run_id).order_by(RunAttempt.number)
        ]
        return {
            "status": str(run.status),
            "created_at": run.created_at,
            "started_at": run.started_at,
            "epoch": (run.progress or {}).get("epoch"),
            "attempts": outcomes,
        }


def epoch_seconds(run_id: int) -> list[float]:
    """The run's measured epoch lengths (its epoch_seconds metric)."""
    from store.db import session_scope
    from store.runs import metrics

    with session_scope() as session:
        series = metrics.series(session, run_id)
    return [value for _, value in series.get(f"{STAGE}/epoch_seconds", [])]


class Worker:
    """One real Celery worker process (cli.processes' command line), logging to a file."""

    def __init__(self, data_dir: Path, name: str):
        import subprocess

        from cli.processes import lane_env, worker_command
        from jobspec.scheduling import Lane
        from store import queue

        queue.declare()  # before the worker: the embedded transport creates it otherwise
        self.log = data_dir / f"{name}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                worker_command(os.environ["STACKLAB_QUEUE"], name),
                cwd=HERE,
                # A training worker whatever the caller's environment says (a lane or a
                # worker name set for another process must not make it a CPU-lane one).
                env={**os.environ, **lane_env(Lane.TRAINING, name)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopped whole
            )

    def wait_for(self, predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace").splitlines()[-30:]
                raise RuntimeError(f"worker exited ({self.proc.returncode}):\n" + "\n".join(tail))
            if value := predicate():
                return value
            time.sleep(0.02)
        tail = self.log.read_text(errors="replace").splitlines()[-40:]
        raise TimeoutError(
            f"timed out after {timeout:.0f} s waiting for {what}; the worker's log ends:\n"
            + "\n".join(tail)
        )

    def stop(self) -> None:
        import subprocess

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def forget_redis_queues(url: str) -> None:
    """kombu leaves the queues and their bindings in Redis; these names are the bench's."""
    import redis

    names = (os.environ["STACKLAB_QUEUE"], os.environ["STACKLAB_CPU_QUEUE"])
    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url) as client:
        for name in names:
            client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


def urgent_start(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """(b) on one stack: launch -> started_at of a priority-10 run while a priority-0 run
    trains, next to that run's epoch length."""
    from jobspec.status import AttemptOutcome, RunStatus
    from store.db import session_scope
    from store.runs import launch as launcher
    from store.timeutil import aware

    extra = {**FAST, "STACKLAB_PREEMPT_AFTER_SECONDS": f"{args.preempt_after:g}"}
    if kind == "postgres":
        extra["REDIS_URL"] = args.redis_url
    with stack(kind, args, **extra) as data_dir:
        worker = Worker(data_dir, "bench")
        try:
            low = launch("low", priority=0, epochs=1000, batch_size=args.batch_size)
            log(f"(b) {kind}: run {low} (priority 0) launched; {args.warm_epochs} epochs first")
            # Trained past the minimum, and a few epochs measured (the worker's first
            # epochs include TensorFlow's start-up and the first graph).
            worker.wait_for(
                lambda: len(epoch_seconds(low)) >= args.warm_epochs,
                timeout=600,
                what=f"run {low} to train {args.warm_epochs} epochs",
            )
            epochs = epoch_seconds(low)
            at_launch = read_run(low)["epoch"]
            log(f"(b) {kind}: epochs of run {low} took {[round(e, 2) for e in epochs]} s")
            launched = time.time()
            high = launch("urgent", priority=10, epochs=1, batch_size=args.batch_size)
            started = worker.wait_for(
                lambda: (r := read_run(high))["started_at"] is not None and r,
                timeout=300,
                what=f"run {high} to start",
            )
            wall_s = time.time() - launched
            log(f"(b) {kind}: run {high} (priority 10) started {wall_s:.2f} s after its launch")
            set_aside = read_run(low)
            in_flight = epoch_seconds(low)[len(epochs) :]  # the epochs it ended after the launch
            done = worker.wait_for(
                lambda: (r := read_run(high))["status"] in RunStatus.finished() and r,
                timeout=300,
                what=f"run {high} to finish",
            )
            with contextlib.suppress(Exception), session_scope() as session:
                launcher.cancel(session=session, run_id=low)
        finally:
            worker.stop()
            if kind == "postgres":
                forget_redis_queues(args.redis_url)
    created, begun = aware(started["created_at"]), aware(started["started_at"])
    db_s = (begun - created).total_seconds()
    epoch = statistics.median(epochs[1:] or epochs)
    # The target's epoch: the one in flight when the urgent run came (on a shared machine
    # it may differ from the ones before); the median before, when none ended since.
    flight = in_flight[0] if in_flight else epoch
    ended = [
        e for n, o, e in set_aside["attempts"] if o == AttemptOutcome.PREEMPTED and e is not None
    ]
    handed_back = aware(ended[0]) if ended else None
    return {
        "stack": "embedded" if kind == "sqlite" else "redis+postgres",
        "preempt_after_s": args.preempt_after,
        "epoch_s": epoch,
        "epochs_before": len(epochs),
        "launch_to_start_s": db_s,
        "launch_to_start_wall_s": wall_s,
        "epoch_in_flight_s": flight,
        "target_s": flight + SLACK_S,
        "met": db_s <= flight + SLACK_S,
        "epoch_at_launch": at_launch,
        "epochs_after_launch_s": in_flight,
        "handed_back_after_s": (handed_back - created).total_seconds() if handed_back else None,
        "claimed_after_hand_back_s": (begun - handed_back).total_seconds() if handed_back else None,
        "low_attempts": [f"{n}:{o}" for n, o, _ in set_aside["attempts"]],
        "urgent_status": done["status"],
    }


# --- report ---------------------------------------------------------------------------------


def print_table(figures: dict[str, Any]) -> None:
    if figures["claim"]:
        print_claims(figures)
    for r in figures["urgent"]:
        print_urgent(r)


def seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f} s"


def print_urgent(r: dict[str, Any]) -> None:
    after = [round(e, 2) for e in r["epochs_after_launch_s"]]
    print(
        f"\n(b) {r['stack']}: the priority-10 run started {r['launch_to_start_s']:.2f} s after "
        f"its launch (wall {r['launch_to_start_wall_s']:.2f} s)\n"
        f"    the running run's epoch in flight: {r['epoch_in_flight_s']:.2f} s (median before "
        f"the launch {r['epoch_s']:.2f} s; epochs ended after it: {after} s); target "
        f"{r['target_s']:.2f} s (that epoch + {SLACK_S:g} s): "
        f"{'met' if r['met'] else 'MISSED'}\n"
        f"    asked at epoch {r['epoch_at_launch']}, handed back "
        f"{seconds(r['handed_back_after_s'])} after the launch, the urgent run claimed "
        f"{seconds(r['claimed_after_hand_back_s'])} after that; "
        f"low run's attempts {r['low_attempts']}"
    )


def print_claims(figures: dict[str, Any]) -> None:
    print(f"\n(a) one claim, ms (own transaction, rolled back); {figures['claims']} claims each")
    columns = ("claim_next p50/p95/max", "baseline p50/p95/max")
    head = f"{'stack':<10}{'in queue':>8}  {columns[0]:>26}  {columns[1]:>24}"
    print(head + f"  {'plan ms':>9}  {'read ms':>9}")
    for kind, rows in figures["claim"].items():
        for r in rows:
            c, b = r["claim_next_ms"], r["baseline_claim_ms"]
            print(
                f"{kind:<10}{r['queued']:>8}  {c['p50']:>8.2f}{c['p95']:>9.2f}{c['max']:>9.2f}"
                f"  {b['p50']:>7.2f}{b['p95']:>8.2f}{b['max']:>9.2f}"
                f"  {plan_cell(r):>9}  {r['plan_read_ms']['p50']:>9.1f}"
            )
    print(f"target: claim_next p95 < {TARGET_CLAIM_P95_MS:g} ms on PostgreSQL")


def plan_cell(row: dict[str, Any]) -> str:
    return "error" if "plan_error" in row else f"{row['plan_ms']['p50']:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="queued runs, comma-separated")
    parser.add_argument("--claims", type=int, default=200, help="claims timed per size")
    parser.add_argument("--stack", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg-url", help="a PostgreSQL database to use (else one is created)")
    parser.add_argument("--pg-admin-url", default=os.environ.get("STACKLAB_BENCH_PG", PG_ADMIN_URL))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--skip-claims", action="store_true", help="leave out (a)")
    parser.add_argument("--skip-preempt", action="store_true", help="leave out (b)")
    parser.add_argument("--preempt-after", type=float, default=1.0, help="seconds (b)")
    parser.add_argument("--warm-epochs", type=int, default=3, help="epochs before (b)'s launch")
    parser.add_argument("--train-images", type=int, default=500, help="demo images (b)")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    # A timeout's SIGTERM unwinds like Ctrl-C: the worker stopped, the database dropped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.stacks = ["sqlite", "postgres"] if args.stack == "both" else [args.stack]
    if args.claims < 2 or not args.sizes or min(args.sizes) < 10:
        parser.error("--claims must be at least 2, --sizes at least 10")

    claim = {} if args.skip_claims else bench_claims(args)
    urgent = [] if args.skip_preempt else [urgent_start(kind, args) for kind in args.stacks]
    figures = {"bench": "scheduler", "claims": args.claims, "claim": claim, "urgent": urgent}
    print_table(figures)
    pg = [r["claim_next_ms"]["p95"] for r in claim.get("postgres", [])]
    figures["claim_target_met"] = all(p < TARGET_CLAIM_P95_MS for p in pg) if pg else None
    figures["urgent_target_met"] = all(r["met"] for r in urgent) if urgent else None
    print(json.dumps(_rounded(figures), default=str))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


if __name__ == "__main__":
    main()
