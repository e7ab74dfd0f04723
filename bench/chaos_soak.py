"""Chaos soak (issue 20): quick runs of every kind through real workers while faults land.

Per stack (Redis + PostgreSQL, and the embedded SQLite stack): a throw-away store, the web
(uvicorn, as the tests start it: tests/stack.py) and --workers Celery workers. A load thread
keeps a few runs in flight through the HTTP API (pretrains with finetunes of them, scratch
finetunes, tunes of two parts, an augmentation ablation study, data set uploads; now and
then a user's cancel; about 50 in 5 minutes with 3 workers on 2 cores) until --minutes are
up (or --runs were launched), while a fault thread injects one fault at a time (each kind
once per round, in an order drawn with --seed):

    kill9-child   SIGKILL a worker's pool child (Celery starts another)
    kill9-main    SIGKILL a worker's main process (its child is orphaned); a new worker starts
    sigstop       SIGSTOP a pool child or main for 0.5-3 stale windows, then SIGCONT
    sigterm       SIGTERM a worker's main (graceful stop: hand back), then start a new one;
                  half the time a cancel of the run it holds lands during the hand-back
    db-refuse     the database refuses every connection for 1-4 stale windows (a TCP proxy
                  in front of PostgreSQL; Redis + PostgreSQL only)
    broker-flush  Redis FLUSHDB of the soak's own database / the embedded queue's pending
                  messages dropped
    clock-offset  a worker restarted (gracefully) with its clock +-300 s off
                  (STACKLAB_TEST_CLOCK_OFFSET_SECONDS)
    disk-full     the embedded store answers "database or disk is full" for 1-4 stale
                  windows (STACKLAB_TEST_DISK_FULL_FILE, when the store has that test hook)

Then it drains (no more faults or launches; every run and import must end within
--drain-minutes, or still be progressing, or queued behind runs that are) and checks: every run
final (or progressing), every epoch recorded once (metric rows unique per run, key and step,
steps 1..N), every failed run, failed import and non-succeeded attempt explained by a fault
or a cancel that hit it (a lost attempt only on a process that was killed or stopped), no
message loop (no re-send after the drain, the broker's queue short, sends per run bounded),
no process left after shutdown. Prints a table per stack (faults injected and survived, runs
by status, attempts by outcome, failed checks with their evidence); the last line is one
JSON object.

    python bench/chaos_soak.py [--minutes 30] [--stack redis-postgres|embedded|both]
        [--seed 0] [--workers 3] [--runs 0] [--fault-every 10] [--faults a,b] [--keep]

Exit status 1 when a check failed. Needs PostgreSQL and Redis for redis-postgres
(STACKLAB_TEST_PG, STACKLAB_TEST_REDIS as for the queue tests); waits stretch with
STACKLAB_TEST_TIMEOUT_SCALE.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
if str(HERE) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from jobspec.scheduling import Lane  # noqa: E402
from jobspec.status import AttemptOutcome, ImportState, RunStatus  # noqa: E402
from tests.chaos import TcpProxy  # noqa: E402
from tests.fault_switch.sitecustomize import fill_free_pages, free_pages_again  # noqa: E402
from tests.stack import (  # noqa: E402
    FAST,
    REDIS_URL,
    Web,
    Workers,
    create_pg_database,
    scaled,
    stack_env,
    start_web,
)

OFFSET_VAR = "STACKLAB_TEST_CLOCK_OFFSET_SECONDS"
DISK_FULL_VAR = "STACKLAB_TEST_DISK_FULL_FILE"
FAULTS = (
    "kill9-child", "kill9-main", "sigstop", "sigterm", "db-refuse", "broker-flush",
    "clock-offset", "disk-full",
)  # fmt: skip
FINAL = RunStatus.finished()
RESENT = re.compile(r"run (\d+):[^\n]*sent again")
TINY = {"epochs": 2, "batch_size": 50}


def log(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def with_disk_full_switch(env: dict[str, str], flag: Path) -> dict[str, str] | None:
    """`env` for processes whose SQLite refuses new pages while `flag` exists (issue 20's
    test-only switch: tests/fault_switch, first on PYTHONPATH; or a hook in the store),
    or None when this checkout has neither."""
    switch = HERE / "tests" / "fault_switch" / "sitecustomize.py"
    if switch.is_file() and DISK_FULL_VAR in switch.read_text():
        from tests.fault_switch import sitecustomize as fault_switch

        return {**fault_switch.env_for_processes(env), DISK_FULL_VAR: str(flag)}
    if any(DISK_FULL_VAR in p.read_text(errors="replace") for p in (HERE / "store").rglob("*.py")):
        return {**env, DISK_FULL_VAR: str(flag)}
    return None


def pid_of(worker_host: str | None) -> int | None:
    """The process id in a worker name (host:pid, or name@host:pid)."""
    if not worker_host or ":" not in worker_host:
        return None
    with contextlib.suppress(ValueError):
        return int(worker_host.rsplit(":", 1)[1])
    return None


def alive(pid: int) -> bool:
    """Running (or stopped), not gone and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def pool_children(pid: int) -> list[int]:
    """A process's children, whichever of its threads started them (Celery's pool starts a
    replacement child from another thread than the first: tests.stack.pool_children reads
    the main thread's list only)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return sorted(set(found))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- the stack ------------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected fault: what, when (seconds since the soak started), on whom."""

    kind: str
    at: float
    until: float
    target: str = ""
    pids: list[int] = field(default_factory=list)  # processes it hit directly
    note: str = ""
    runs_hit: list[int] = field(default_factory=list)
    survived: bool | None = None


@dataclass
class Slot:
    """One worker's place: restarted under a new name after a kill or a stop."""

    name: str
    generation: int = 0
    proc: Any = None
    offset: float = 0.0
    lane: Lane = Lane.TRAINING


class Stack:
    """Store, broker, web and workers of one kind, with the handles the faults need."""

    def __init__(self, kind: str, args: argparse.Namespace, tmp: Path):
        self.kind, self.args = kind, args
        self.dir = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=tmp))
        self.logs = self.dir / "logs"
        self.exits: list[str] = []  # workers that exited by themselves, and why
        self.logs.mkdir()
        stale = float(FAST["STACKLAB_STALE_AFTER_SECONDS"])
        self.stale = stale
        self.env: dict[str, str] = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STACKLAB_")},
            "STACKLAB_DATA_DIR": str(self.dir),
            "STACKLAB_QUEUE": f"chaos-{uuid.uuid4().hex[:8]}",
            **FAST,
        }
        for key in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", OFFSET_VAR):
            self.env.pop(key, None)
        self.env["PYTHONPATH"] = str(HERE)
        self.proxy: TcpProxy | None = None
        self.drop_db = None
        self.redis_db: int | None = None
        self.direct_url = f"sqlite:///{self.dir / 'stacklab.db'}"
        self.disk_full_file = self.dir / "DISK-FULL"
        if kind == "redis-postgres":
            url, self.drop_db = create_pg_database()
            self.direct_url = url
            self.proxy = TcpProxy.for_url(url, 5432).start()
            self.env["DATABASE_URL"] = self.proxy.rewrite(url)
            self.redis_db = claim_redis_db(args.redis_db)
            self.env["REDIS_URL"] = REDIS_URL.rsplit("/", 1)[0] + f"/{self.redis_db}"
        elif "disk-full" in args.faults:
            self.env = with_disk_full_switch(self.env, self.disk_full_file) or self.env
        self.engine = sa.create_engine(self.direct_url)
        self.web: Web | None = None
        self.slots = [Slot(f"w{i + 1}") for i in range(args.workers)]
        self.slots.append(Slot("cpu", lane=Lane.CPU))  # imports: the CPU lane, killed too
        self.procs: list[Any] = []  # every worker main ever started
        self.pids: dict[int, dict] = {}  # pid -> {slot, role, main, offset}
        self.lock = threading.Lock()
        self.wall_start = time.time()  # set again when the soak starts

    # life
    def setup(self) -> None:
        setup_env = {**self.env}
        if self.proxy:  # this process reads the database directly, never through the proxy
            setup_env["DATABASE_URL"] = self.direct_url
        keep = {k: setup_env[k] for k in setup_env if k in self._stack_vars()}
        with stack_env(keep):
            from store import queue
            from store.db import upgrade_schema
            from worker.datasets import register
            from worker.ml.datasets.demo import make_demo

            upgrade_schema()
            register(make_demo(seed=0, n_train=200, n_test=50), name="demo-tiny")
            queue.declare()
        self.web = start_web(self.env, log=self.logs / "web.log", timeout=120)
        for slot in self.slots:
            self.start_worker(slot)

    @staticmethod
    def _stack_vars() -> set[str]:
        from tests.stack import STACK_VARS

        return set(STACK_VARS)

    def start_worker(self, slot: Slot, offset: float = 0.0) -> None:
        slot.generation += 1
        slot.offset = offset
        env = {**self.env}
        if offset:
            env[OFFSET_VAR] = f"{offset:g}"
        proc = Workers(env, self.logs).start(f"{slot.name}g{slot.generation}", slot.lane)
        slot.proc = proc
        with self.lock:
            self.procs.append(proc)
            name = f"{slot.name}g{slot.generation}"
            self.pids[proc.pid] = {"slot": name, "role": "main", "main": proc.pid, "offset": offset}

    def sample_pids(self) -> None:
        """Note every process of every worker tree (pool children, import parsers)."""
        with self.lock:
            mains = [(p.pid, self.pids.get(p.pid, {})) for p in self.procs if p.poll() is None]
        for main, info in mains:
            for child in pool_children(main):
                self._note(child, info, "child", main)
                for grandchild in pool_children(child):
                    self._note(grandchild, info, "grandchild", main)

    def _note(self, pid: int, info: dict, role: str, main: int) -> None:
        with self.lock:
            if pid not in self.pids and alive(pid):
                self.pids[pid] = {"slot": info.get("slot"), "role": role, "main": main,
                                  "offset": info.get("offset", 0.0)}  # fmt: skip

    def children_of(self, main: int) -> list[int]:
        with self.lock:
            return [p for p, i in self.pids.items() if i["main"] == main and p != main]

    def stop(self) -> None:
        for proc in self.procs:  # a stopped process cannot hear SIGTERM
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGCONT)
        with self.lock:
            procs = list(self.procs)
        workers = Workers(self.env, self.logs)
        workers.procs = procs
        workers.stop_all(timeout=scaled(60))
        if self.web:
            self.web.stop()
        if self.proxy:
            self.proxy.close()

    def cleanup(self) -> None:
        self.engine.dispose()
        if self.drop_db:
            with contextlib.suppress(Exception):
                self.drop_db()
        if self.redis_db is not None:
            with contextlib.suppress(Exception):
                redis_client(self.redis_db).flushdb()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # reading the store (directly, whatever the faults do to the others)
    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    def active_runs(self) -> list[Any]:
        return self.query(
            "SELECT id, status, worker_host, progress, heartbeat_at, cancel_requested, "
            "parent_run_id FROM runs WHERE status IN (:queued, :running)",
            queued=RunStatus.QUEUED.value,
            running=RunStatus.RUNNING.value,
        )


def redis_client(db: int):
    import redis

    return redis.Redis.from_url(REDIS_URL.rsplit("/", 1)[0] + f"/{db}")


def claim_redis_db(wanted: int | None) -> int:
    """A Redis database of our own (FLUSHDB must not touch anyone else's keys)."""
    for db in [wanted] if wanted is not None else range(15, 0, -1):
        client = redis_client(db)
        free = wanted is not None or client.dbsize() == 0
        if free and client.set("stacklab:chaos-soak", str(os.getpid()), nx=True, ex=7200):
            return db
    raise RuntimeError("no empty Redis database (1-15) for the soak; pass --redis-db")


# --- load: runs of every kind through the API ------------------------------------------------


def tiny_npz() -> bytes:
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    np.savez(
        out,
        x_train=rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8),
        y_train=np.arange(24) % 3,
        x_test=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(6) % 3,
    )
    return out.getvalue()


class Load:
    """Keeps a few runs in flight until enough were launched; cancels one now and then."""

    JOBS = ("pretrain+finetune", "finetune", "tune", "ablation", "import", "finetune")

    def __init__(self, stack: Stack, rng: random.Random, clock: Clock):
        self.stack, self.rng, self.clock = stack, rng, clock
        self.http = httpx.Client(base_url=stack.web.url, timeout=30)  # type: ignore[union-attr]
        self.runs: dict[int, str] = {}  # id -> what launched it
        self.imports: dict[int, str] = {}
        self.cancels: dict[int, float] = {}  # run id -> when a cancel was asked for
        self.answers: Counter = Counter()
        self.next_job = 0

    def runtime(self) -> dict:
        return {"runtime": {"max_attempts": self.rng.choice([2, 3, 4])}}

    def post(self, path: str, **kw: Any) -> httpx.Response | None:
        try:
            res = self.http.post(path, **kw)
        except httpx.HTTPError as err:
            self.answers[f"{path.split('/')[2]} {type(err).__name__}"] += 1
            return None
        self.answers[f"{path.split('/')[2]} {res.status_code}"] += 1
        return res if res.status_code < 300 else None

    def launch(self, body: dict, what: str) -> list[int]:
        res = self.post("/api/runs", json={"dataset": "demo-tiny", "tags": ["chaos"], **body})
        ids = [r["id"] for r in res.json()] if res else []
        for run_id in ids:
            self.runs[run_id] = what
        return ids

    def step(self) -> None:
        """One launch (or a cancel), when fewer runs than twice the workers are active."""
        active = self.stack.active_runs()
        if active and self.rng.random() < self.stack.args.cancel_share:
            run = self.rng.choice(active)
            if self.post(f"/api/runs/{run.id}/cancel"):
                self.cancels.setdefault(run.id, self.clock.now())
            return
        cap = self.stack.args.runs
        if len(active) >= 2 * len(self.stack.slots) or (cap and len(self.runs) >= cap):
            return
        job = self.JOBS[self.next_job % len(self.JOBS)]
        self.next_job += 1
        getattr(self, "job_" + job.replace("+", "_"))()

    def job_pretrain_finetune(self) -> None:
        stages = {"ae01": TINY, "ae02": TINY, "ae03": TINY}
        pre = self.launch({"kind": "pretrain", "params": {**stages, **self.runtime()}}, "pretrain")
        if pre:
            params = {"encoder": "stacked", "epochs": 3, "batch_size": 50, **self.runtime()}
            self.launch(
                {"kind": "finetune", "parent_run_id": pre[0], "params": params}, "finetune-child"
            )

    def job_finetune(self) -> None:
        params = {
            "encoder": "scratch", "architecture": "single", "epochs": 4, "batch_size": 20,
            "early_stopping": {"patience": 100}, **self.runtime(),
        }  # fmt: skip
        self.launch({"kind": "finetune", "params": params}, "finetune")

    def job_tune(self) -> None:
        params = {
            "n_trials": 2, "pruning": False, "epochs": 2, "batch_size": 50,
            "kernel_sizes": [3, 5], "optimizers": ["adam", "sgd"],
            "study_name": f"chaos-{uuid.uuid4().hex[:6]}", **self.runtime(),
        }  # fmt: skip
        self.launch({"kind": "tune", "parallel": 2, "params": params}, "tune")

    def job_ablation(self) -> None:
        params = {"encoder": "scratch", "architecture": "single", **TINY, **self.runtime()}
        body = {"dataset": "demo-tiny", "factor": "augmentation", "params": params, "seeds": [0, 1]}
        res = self.post("/api/ablations", json=body)
        if res:
            group = res.json()["group_id"]
            for (run_id,) in self.stack.query("SELECT id FROM runs WHERE group_id = :g", g=group):
                self.runs[run_id] = "ablation"

    def job_import(self) -> None:
        name = f"chaos-{uuid.uuid4().hex[:6]}"
        res = self.post(
            "/api/datasets/upload",
            params={"name": name},
            files={"file": ("tiny.npz", tiny_npz(), "application/octet-stream")},
        )
        if res:
            self.imports[res.json()["import_id"]] = name

    def cancel_now(self, run_id: int) -> None:
        if self.post(f"/api/runs/{run_id}/cancel"):
            self.cancels.setdefault(run_id, self.clock.now())


# --- faults ----------------------------------------------------------------------------------


class Clock:
    """Seconds since the soak started."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.wall_start = time.time()

    def now(self) -> float:
        return round(time.monotonic() - self.start, 2)


class Injector:
    """One fault at a time, drawn with the soak's seed, each recorded with what it hit."""

    def __init__(self, stack: Stack, load: Load, rng: random.Random, clock: Clock):
        self.stack, self.load, self.rng, self.clock = stack, load, rng, clock
        self.faults: list[Fault] = []
        self.stopped = threading.Event()
        kinds = [f for f in stack.args.faults if f in FAULTS]
        if stack.kind != "redis-postgres":
            kinds = [f for f in kinds if f != "db-refuse"]
        if stack.kind != "embedded" or DISK_FULL_VAR not in stack.env:
            kinds = [f for f in kinds if f != "disk-full"]
        self.kinds = kinds
        self.deck: list[str] = []

    def pause(self, low: float, high: float) -> float:
        """Wait low..high stale windows (or less, when told to stop); returns the seconds."""
        seconds = self.rng.uniform(low, high) * self.stack.stale
        self.stopped.wait(seconds)
        return seconds

    def busy_slot(self) -> Slot | None:
        """A worker slot, preferring one whose child holds a running run."""
        live = [s for s in self.stack.slots if s.proc is not None and s.proc.poll() is None]
        if not live:
            return None
        holding = set()
        for run in self.stack.active_runs():
            pid = pid_of(run.worker_host)
            if run.status == RunStatus.RUNNING and pid:
                holding.add(pid)
        busy = [s for s in live if set(pool_children(s.proc.pid)) & holding]
        return self.rng.choice(busy if busy and self.rng.random() < 0.8 else live)

    def runs_on(self, pids: list[int]) -> list[int]:
        return [
            r.id for r in self.stack.active_runs()
            if r.status == RunStatus.RUNNING and pid_of(r.worker_host) in pids
        ]  # fmt: skip

    def draw(self) -> str:
        """The next kind from a shuffled deck of all of them: every kind once per round."""
        if not self.deck:
            self.deck = self.rng.sample(self.kinds, len(self.kinds))
        return self.deck.pop()

    def inject(self) -> Fault | None:
        kind = self.draw()
        fault = Fault(kind, self.clock.now(), self.clock.now())
        method = getattr(self, "do_" + kind.replace("-", "_"))
        if method(fault) is False:
            return None
        fault.until = self.clock.now()
        self.faults.append(fault)
        log(f"{self.stack.kind}: {kind} {fault.target} {fault.note} hit runs {fault.runs_hit}")
        return fault

    def do_kill9_child(self, fault: Fault) -> bool:
        slot = self.busy_slot()
        kids = pool_children(slot.proc.pid) if slot else []
        if not kids:
            return False
        fault.target, fault.pids = slot.name, kids[:1]  # type: ignore[union-attr]
        fault.runs_hit = self.runs_on(fault.pids)
        os.kill(kids[0], signal.SIGKILL)
        return True

    def do_kill9_main(self, fault: Fault) -> bool:
        slot = self.busy_slot()
        if slot is None:
            return False
        main = slot.proc.pid
        self.stack.sample_pids()
        fault.target, fault.pids = slot.name, [main, *pool_children(main)]
        fault.runs_hit = self.runs_on(fault.pids)
        os.kill(main, signal.SIGKILL)  # the child is orphaned, as on a crash of the main
        slot.proc.wait()
        self.stack.start_worker(slot, slot.offset)
        return True

    def do_sigstop(self, fault: Fault) -> bool:
        slot = self.busy_slot()
        if slot is None:
            return False
        kids = pool_children(slot.proc.pid)
        pid = kids[0] if kids and self.rng.random() < 0.75 else slot.proc.pid
        fault.target, fault.pids = slot.name, [pid]
        fault.runs_hit = self.runs_on([pid, *kids])
        os.kill(pid, signal.SIGSTOP)
        try:
            seconds = self.pause(0.5, 3)
        finally:
            os.kill(pid, signal.SIGCONT)
        fault.note = f"{'child' if pid in kids else 'main'} {seconds:.0f} s"
        return True

    def do_sigterm(self, fault: Fault, offset: float | None = None) -> bool:
        slot = self.busy_slot()
        if slot is None:
            return False
        main = slot.proc.pid
        self.stack.sample_pids()
        fault.target, fault.pids = slot.name, [main, *pool_children(main)]
        fault.runs_hit = self.runs_on(fault.pids)
        os.kill(main, signal.SIGTERM)  # docker stop: only the main process hears it
        if offset is None and fault.runs_hit and self.rng.random() < 0.5:
            self.load.cancel_now(fault.runs_hit[0])  # lands while it hands the run back
            fault.note = f"cancel of run {fault.runs_hit[0]} during the hand-back"
        try:
            slot.proc.wait(timeout=scaled(90))
        except Exception:  # past any grace: as docker would, kill it
            os.killpg(main, signal.SIGKILL)
            slot.proc.wait()
            fault.note += " (killed after 90 s)"
        self.stack.start_worker(slot, slot.offset if offset is None else offset)
        return True

    def do_clock_offset(self, fault: Fault) -> bool:
        offset = self.rng.choice([-1, 1]) * self.stack.args.clock_offset
        done = self.do_sigterm(fault, offset=offset)
        fault.note = f"restarted {offset:+g} s off"
        return done

    def do_db_refuse(self, fault: Fault) -> bool:
        fault.target = "PostgreSQL"
        fault.runs_hit = [r.id for r in self.stack.active_runs()]
        self.stack.proxy.refuse()  # type: ignore[union-attr]
        try:
            fault.note = f"{self.pause(1, 4):.0f} s"
        finally:
            self.stack.proxy.restore()  # type: ignore[union-attr]
        return True

    def do_disk_full(self, fault: Fault) -> bool:
        fault.target = "SQLite"
        fault.runs_hit = [r.id for r in self.stack.active_runs()]
        db = self.stack.dir / "stacklab.db"
        self.stack.disk_full_file.touch()  # no new page from each connection's next checkout
        try:
            fill_free_pages(db)  # and none left inside the file
            fault.note = f"{self.pause(1, 4):.0f} s"
        finally:
            self.stack.disk_full_file.unlink(missing_ok=True)
            free_pages_again(db)
        return True

    def do_broker_flush(self, fault: Fault) -> bool:
        fault.runs_hit = [r.id for r in self.stack.active_runs() if r.status == RunStatus.QUEUED]
        if self.stack.redis_db is not None:
            fault.target = f"Redis db {self.stack.redis_db}"
            client = redis_client(self.stack.redis_db)
            fault.note = f"{client.dbsize()} keys"
            client.flushdb()
            client.set("stacklab:chaos-soak", str(os.getpid()), ex=7200)
        else:  # pending messages vanish; rows stay so every send can still be counted
            fault.target = "queue.db"
            with queue_db(self.stack) as db:
                n = db.execute("UPDATE kombu_message SET visible = 0 WHERE visible = 1").rowcount
            fault.note = f"{n} pending messages"
        return True


@contextlib.contextmanager
def queue_db(stack: Stack):
    import sqlite3

    db = sqlite3.connect(str(stack.dir / "queue.db"), timeout=30)
    try:
        yield db
        db.commit()
    finally:
        db.close()


# --- the checks -------------------------------------------------------------------------------


@dataclass
class Findings:
    """What the checks found, by check name: a list of evidence lines each (empty: passed)."""

    checks: dict[str, list[str]] = field(default_factory=dict)

    def add(self, check: str, evidence: str | None = None) -> None:
        self.checks.setdefault(check, [])
        if evidence:
            self.checks[check].append(evidence)

    @property
    def ok(self) -> bool:
        return not any(self.checks.values())


def drain(stack: Stack, load: Load, clock: Clock, findings: Findings) -> dict:
    """Wait for every run and import to end. At the bound, a run whose status or progress
    changed in the last 30 s is progressing, a queued one behind runs that progress (its
    parent, or a run on every worker) is waiting: neither is stuck."""
    deadline = time.monotonic() + scaled(stack.args.drain_minutes * 60)
    seen: dict[int, tuple] = {}
    moved: dict[int, float] = {}
    next_note = time.monotonic() + 30
    while time.monotonic() < deadline:
        stack.sample_pids()
        active = stack.active_runs()
        imports = open_imports(stack)
        if not active and not imports:
            break
        if time.monotonic() >= next_note:
            next_note = time.monotonic() + 30
            log(f"{stack.kind}: draining: {[(r.id, r.status) for r in active]}")
        for run in active:
            state = (run.status, json.dumps(run.progress, sort_keys=True, default=str))
            if seen.get(run.id) != state:
                seen[run.id], moved[run.id] = state, time.monotonic()
        time.sleep(1)
    active = stack.active_runs()
    progressing: list[int] = []
    waiting: list[int] = []  # queued behind runs that move: their parent, or every worker
    stuck: list[int] = []
    for run in active:
        if time.monotonic() - moved.get(run.id, 0) < scaled(30):
            progressing.append(run.id)
    busy = [r.id for r in active if r.status == RunStatus.RUNNING and r.id in progressing]
    for run in active:
        if run.id in progressing:
            continue
        behind = run.parent_run_id in progressing or len(busy) >= stack.args.workers
        if run.status == RunStatus.QUEUED and behind:
            waiting.append(run.id)
            continue
        stuck.append(run.id)
        findings.add(
            "every run final or progressing",
            f"run {run.id} ({load.runs.get(run.id, '?')}) {run.status} "
            f"cancel_requested={bool(run.cancel_requested)} worker={run.worker_host} "
            f"progress={json.dumps(run.progress, default=str)[:160]}",
        )
    for import_id in open_imports(stack):
        findings.add("every run final or progressing", f"import {import_id} never ended")
    findings.add("every run final or progressing")
    return {
        "drained_at_s": clock.now(),
        "progressing": progressing,
        "waiting": waiting,
        "stuck": stuck,
    }


def open_imports(stack: Stack) -> list[int]:
    """Imports not ended yet."""
    return [
        import_id
        for import_id, state in stack.query("SELECT id, state FROM dataset_imports")
        if ImportState(state).is_active
    ]


def check_epochs(stack: Stack, findings: Findings) -> int:
    check = "every epoch recorded once"
    findings.add(check)
    dupes = stack.query(
        "SELECT run_id, key, step, count(*) FROM metrics GROUP BY run_id, key, step "
        "HAVING count(*) > 1"
    )
    for run_id, key, step, n in dupes[:20]:
        findings.add(check, f"run {run_id} {key} step {step} stored {n} times")
    steps: dict[tuple[int, str], list[int]] = defaultdict(list)
    for run_id, key, step in stack.query("SELECT run_id, key, step FROM metrics ORDER BY step"):
        steps[(run_id, key)].append(step)
    for (run_id, key), got in sorted(steps.items()):
        if sorted(set(got)) != list(range(1, max(got) + 1)):
            findings.add(check, f"run {run_id} {key} steps {sorted(got)} (not 1..{max(got)})")
    return len(steps)


class Blame:
    """Which fault (or cancel) explains each non-succeeded attempt, failed run and import."""

    def __init__(self, stack: Stack, load: Load, faults: list[Fault]):
        self.stack, self.load, self.faults = stack, load, faults
        self.killed: set[int] = set()
        self.stopped: set[int] = set()
        self.termed: set[int] = set()
        self.lost_after_sigterm: list[str] = []  # given up although told to stop
        self.kinds = {f.kind for f in faults}
        self.parents: dict[int, str] = {  # runs whose parent did not succeed
            run_id: f"{parent} is {status}"
            for run_id, parent, status in stack.query(
                "SELECT r.id, p.id, p.status FROM runs r JOIN runs p ON p.id = r.parent_run_id"
            )
            if status != RunStatus.SUCCEEDED
        }
        for f in faults:
            target = {"kill9-child": self.killed, "kill9-main": self.killed,
                      "sigstop": self.stopped}.get(f.kind)  # fmt: skip
            if f.kind in ("sigterm", "clock-offset"):
                target = self.termed if "killed after" not in f.note else self.killed
            if target is not None:
                target.update(f.pids)  # the main and its children at the time of the fault

    def around(self, began: Any, ended: Any) -> str:
        """The faults injected while an attempt ran (by the database's stamps), as a hint."""
        start, end = _epoch(began), _epoch(ended) or time.time()
        if start is None:
            return ""
        wall = self.stack.wall_start
        near = [
            f"{f.kind}@{f.at:.0f}s"
            for f in self.faults
            if wall + f.at <= end + 2 and wall + f.until >= start - 2
        ]
        return f"; faults while it ran: {', '.join(near)}" if near else "; no fault while it ran"

    def who(self, pid: int | None) -> str:
        """A process in words: which worker, its role and clock, the faults that hit it."""
        info = self.stack.pids.get(pid or -1)
        if not info:
            return f"pid {pid} never seen in a worker tree"
        hits = [f"{f.kind}@{f.at:.0f}s" for f in self.faults if pid in f.pids]
        clock = f", clock {info['offset']:+g} s" if info.get("offset") else ""
        return f"pid {pid}: {info['slot']} {info['role']}{clock}, hit by {hits or 'nothing'}"

    def offset_of(self, pid: int | None) -> float:
        return float(self.stack.pids.get(pid or -1, {}).get("offset") or 0.0)

    def attempt(self, run_id: int, outcome: str, pid: int | None, note: str | None) -> str | None:
        """None when explained, else why not."""
        if outcome == AttemptOutcome.LOST:
            if pid in self.killed or pid in self.stopped:
                return None
            if pid in self.termed:
                # Told to stop, yet given up rather than handed back: the run resumes all
                # the same (it costs a re-try). Counted and shown, not failed: see the README.
                self.lost_after_sigterm.append(f"run {run_id}: {self.who(pid)}")
                return None
            if self.offset_of(pid):
                return f"lost on a worker whose clock is {self.offset_of(pid):+g} s off (skew)"
            return f"lost, but its process was never killed or stopped; {self.who(pid)}"
        if outcome == AttemptOutcome.INTERRUPTED:
            return None if pid in self.termed or pid in self.killed else "interrupted, no SIGTERM"
        if outcome == AttemptOutcome.CANCELLED:
            return None if run_id in self.load.cancels else "cancelled, nobody asked"
        if outcome == AttemptOutcome.FAILED:
            return self.error(note or "", pid, run_id)
        return None

    def error(self, error: str, pid: int | None, run_id: int) -> str | None:
        text = error.lower()
        if run_id in self.parents and "[errno" not in text:
            return None  # its parent stopped short, and the reason says what it lacks
        if "stopped responding" in text or "died" in text:
            return None if (pid in self.killed or pid in self.stopped) else "lost without a fault"
        if "disk" in text and "disk-full" in self.kinds:
            return None
        if ("database" in text or "store" in text or "connect" in text) and (
            "db-refuse" in self.kinds
        ):
            return None
        return "no fault explains it"


def _since(stack: Stack, moment: Any) -> float | None:
    """A stored timestamp as seconds since the soak started."""
    seconds = _epoch(moment)
    return None if seconds is None else round(seconds - stack.wall_start, 1)


def _epoch(moment: Any) -> float | None:
    """A stored timestamp (aware, naive UTC from SQLite, or text) as seconds since 1970."""
    from datetime import UTC, datetime

    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_reasons(stack: Stack, load: Load, blame: Blame, findings: Findings) -> dict:
    check = "every failure explained by its fault"
    findings.add(check)
    outcomes: Counter = Counter()
    rows = stack.query(
        "SELECT a.run_id, a.number, a.outcome, a.worker_host, a.note, r.error, "
        "a.started_at, a.ended_at FROM run_attempts a JOIN runs r ON r.id = a.run_id "
        "ORDER BY a.run_id, a.number"
    )
    for run_id, number, outcome, host, note, error, began, ended in rows:
        outcomes[outcome] += 1
        why = blame.attempt(run_id, outcome, pid_of(host), note or error)
        if why and run_id in blame.parents:
            why += f" (its parent run {blame.parents[run_id]})"
        if why:
            findings.add(
                check,
                f"run {run_id} attempt {number} on {host}: {why} (note: {str(note)[:200]})"
                f"{blame.around(began, ended)}",
            )
    last = {r[0]: r for r in rows}
    failed = RunStatus.FAILED.value
    for run_id, error in stack.query("SELECT id, error FROM runs WHERE status = :f", f=failed):
        attempt = last.get(run_id)
        why = blame.error(error or "", pid_of(attempt[3]) if attempt else None, run_id)
        if why:
            parent = f" (its parent run {blame.parents[run_id]})" if run_id in blame.parents else ""
            findings.add(check, f"run {run_id} failed: {why}{parent}: {str(error)[:240]}")
    for import_id, message, worker in stack.query(
        "SELECT id, message, worker FROM dataset_imports WHERE state = :f",
        f=ImportState.FAILED.value,
    ):
        pid = pid_of(worker)
        hit = pid in blame.killed or pid in blame.stopped or pid in blame.termed
        if not hit and blame.error(str(message or ""), pid, -1) is not None:
            findings.add(check, f"import {import_id} failed on {worker}: {str(message)[:240]}")
    return dict(outcomes)


def run_details(stack: Stack, load: Load) -> list[dict]:
    """Every run with its attempts (outcome, process, note): the evidence behind the table."""
    attempts: dict[int, list] = defaultdict(list)
    for run_id, number, outcome, host, note in stack.query(
        "SELECT run_id, number, outcome, worker_host, note FROM run_attempts "
        "ORDER BY run_id, number"
    ):
        info = stack.pids.get(pid_of(host) or -1, {})
        where = f"{info.get('slot', '?')}{'' if not info.get('offset') else ' skewed'}"
        attempts[run_id].append([number, outcome, pid_of(host), where, (note or "")[:160]])
    return [
        {
            "id": run_id, "what": load.runs.get(run_id, kind), "status": status,
            "error": (error or "")[:300], "cancel_asked": run_id in load.cancels,
            "attempts": attempts.get(run_id, []),
            "created_s": _since(stack, created), "finished_s": _since(stack, finished),
        }
        for run_id, kind, status, error, created, finished in stack.query(
            "SELECT id, kind, status, error, created_at, finished_at FROM runs ORDER BY id"
        )
    ]  # fmt: skip


def resend_counts(stack: Stack) -> Counter:
    counts: Counter = Counter()
    for path in stack.logs.glob("*.log"):
        for match in RESENT.finditer(path.read_text(errors="replace")):
            counts[int(match.group(1))] += 1
    return counts


def broker_backlog(stack: Stack) -> int:
    if stack.redis_db is not None:
        return int(redis_client(stack.redis_db).llen(stack.env["STACKLAB_QUEUE"]))
    with queue_db(stack) as db:
        return db.execute("SELECT count(*) FROM kombu_message WHERE visible = 1").fetchone()[0]


def sends_per_run(stack: Stack) -> Counter:
    """Embedded queue only: every message ever sent is still a row; count them per run."""
    counts: Counter = Counter()
    if stack.redis_db is not None:
        return counts
    with queue_db(stack) as db:
        for (payload,) in db.execute("SELECT payload FROM kombu_message"):
            with contextlib.suppress(Exception):
                message = json.loads(payload)
                if "import" in message["headers"]["task"]:
                    continue
                args = json.loads(base64.b64decode(message["body"]))[0]
                counts[int(args[0])] += 1
    return counts


CONSUMER = re.compile(
    r"consumer|Cannot connect|Connection|ready|exited with|nothing queued|attempt \d"
)


def consumer_story(stack: Stack, per_log: int = 6) -> list[str]:
    """Each training worker's last lines about its consumer (connections, readiness, pool
    children, claims): why a worker said it was idle yet took no message."""
    story = []
    for path in sorted(stack.logs.glob("w*.log")):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if CONSUMER.search(ln)]
        story += [f"{path.stem}: {ln[:200]}" for ln in lines[-per_log:]]
    return story


def check_loop(stack: Stack, findings: Findings) -> dict:
    """After the drain, a few re-send windows of quiet: nothing sent again, queue short."""
    check = "no message loop"
    findings.add(check)
    before = resend_counts(stack)
    time.sleep(3 * float(FAST["STACKLAB_RESEND_AFTER_SECONDS"]) + 2)
    after = resend_counts(stack)
    for run_id in sorted(after):
        if after[run_id] > before[run_id]:
            findings.add(check, f"run {run_id} re-sent after the drain ({after[run_id]} in all)")
        if after[run_id] > stack.args.max_resends:
            findings.add(check, f"run {run_id} re-sent {after[run_id]} times")
    backlog = broker_backlog(stack)
    if backlog > stack.args.max_backlog:
        findings.add(check, f"{backlog} messages still waiting in the broker after the drain")
    sends = sends_per_run(stack)
    for run_id, n in sorted(sends.items()):
        if n > stack.args.max_resends + 5:
            findings.add(check, f"run {run_id}: {n} messages in the embedded queue")
    if findings.checks[check]:  # evidence for the next reader: what each consumer went through
        for line in consumer_story(stack):
            findings.add(check, line)
    return {
        "resends": sum(after.values()),
        "max_resends_per_run": max(after.values(), default=0),
        "backlog": backlog,
        "max_sends_per_run": max(sends.values(), default=None),
    }


def check_leaks(stack: Stack, findings: Findings) -> int:
    check = "no process left after shutdown"
    findings.add(check)
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        left = [p for p in stack.pids if alive(p) and cmdline(p)]
        if not left:
            break
        time.sleep(0.5)
    for pid in left:
        info = stack.pids[pid]
        findings.add(check, f"pid {pid} ({info['slot']} {info['role']}) {cmdline(pid)[:120]}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # ours: cleaned up, and reported
    return len(stack.pids)


# What a worker's log says when it exited because the store or broker file could not write.
STORE_FAULT_EXITS = ("database or disk is full", "attempt to write a readonly database")


def check_workers_back(stack: Stack, findings: Findings) -> None:
    """Every worker slot ends with a live main and a pool child (Celery replaced kills)."""
    check = "workers recovered"
    findings.add(check)
    for slot in stack.slots:
        if slot.proc is None or slot.proc.poll() is not None:
            code = None if slot.proc is None else slot.proc.returncode
            log_file = stack.logs / f"{slot.name}g{slot.generation}.log"
            text = log_file.read_text(errors="replace") if log_file.exists() else ""
            if any(cause in text for cause in STORE_FAULT_EXITS):
                # The embedded broker's file sat on the full disk too: Celery's consumer gave
                # up on it. Supervised (serve, compose), the worker is started again.
                stack.exits.append(f"{slot.name}g{slot.generation} exited ({code}) on a store "
                                   "fault: its supervisor would start it again")  # fmt: skip
                continue
            findings.add(check, f"{slot.name} has no live worker (exit code {code}); its log "
                         f"ends:\n{text[-1500:]}")  # fmt: skip
        elif not pool_children(slot.proc.pid):
            findings.add(check, f"{slot.name} (pid {slot.proc.pid}) has no pool child")


# --- one soak ----------------------------------------------------------------------------------


def soak(kind: str, args: argparse.Namespace, tmp: Path) -> dict:
    rng = random.Random(f"{args.seed}-{kind}")
    stack = Stack(kind, args, tmp)
    findings = Findings()
    out: dict[str, Any] = {"stack": kind, "dir": str(stack.dir)}
    try:
        log(f"{kind}: starting the store, the web and {args.workers} workers")
        stack.setup()
        clock = Clock()
        stack.wall_start = clock.wall_start
        load = Load(stack, rng, clock)
        injector = Injector(stack, load, random.Random(f"{args.seed}-{kind}-faults"), clock)
        out["fault_kinds"] = injector.kinds
        if "disk-full" in args.faults and kind == "embedded" and "disk-full" not in injector.kinds:
            out["left_out"] = "disk-full: no STACKLAB_TEST_DISK_FULL_FILE switch in this checkout"
        stop = threading.Event()

        def faults() -> None:
            stop.wait(rng.uniform(0.5, 1.5) * args.fault_every)  # let runs start first
            while not stop.is_set():
                try:
                    injector.inject()
                except Exception as err:  # reported; the soak goes on
                    log(f"{kind}: fault failed to inject: {err!r}")
                    out.setdefault("injector_errors", []).append(repr(err))
                stop.wait(rng.uniform(0.5, 1.5) * args.fault_every)

        thread = threading.Thread(target=faults, daemon=True)
        thread.start()
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            stack.sample_pids()
            try:
                load.step()
            except Exception as err:  # the store read failed: try again
                load.answers[f"load {type(err).__name__}"] += 1
            time.sleep(1)
        log(f"{kind}: {args.minutes:g} min up: stopping faults and launches, draining")
        stop.set()
        injector.stopped.set()
        thread.join(timeout=scaled(120))
        out["drain"] = drain(stack, load, clock, findings)
        check_workers_back(stack, findings)
        out["metric_series"] = check_epochs(stack, findings)
        blame = Blame(stack, load, injector.faults)
        out["attempts_by_outcome"] = check_reasons(stack, load, blame, findings)
        out["loop"] = check_loop(stack, findings)
        out["runs_by_status"] = dict(Counter(s for (s,) in stack.query("SELECT status FROM runs")))
        out["runs_by_kind"] = dict(Counter(load.runs.values()))
        out["imports_by_state"] = dict(
            Counter(s for (s,) in stack.query("SELECT state FROM dataset_imports"))
        )
        out["cancels"] = len(load.cancels)
        out["worker_exits"] = stack.exits
        out["lost_after_sigterm"] = blame.lost_after_sigterm
        out["runs"] = run_details(stack, load)
        out["answers"] = dict(load.answers)
        survived(stack, injector.faults, findings)
        out["faults"] = [asdict(f) for f in injector.faults]
    except Exception as err:
        findings.add("soak ran", f"{type(err).__name__}: {err}")
        log(f"{kind}: soak error {err!r}")
    finally:
        with contextlib.suppress(Exception):
            stack.sample_pids()
        stack.stop()
        out["processes_seen"] = check_leaks(stack, findings)
        stack.cleanup()
    out["checks"] = findings.checks
    out["ok"] = findings.ok
    return out


def survived(stack: Stack, faults: list[Fault], findings: Findings) -> None:
    """A fault is survived when every run it hit ended (none stuck) with its reason explained."""
    bad_runs = {
        int(m.group(1))
        for lines in findings.checks.values()
        for line in lines
        if (m := re.match(r"run (\d+)", line))
    }
    statuses = dict(stack.query("SELECT id, status FROM runs"))
    for f in faults:
        f.survived = all(statuses.get(r) in FINAL and r not in bad_runs for r in f.runs_hit)


# --- output ------------------------------------------------------------------------------------


def print_report(results: list[dict]) -> None:
    for r in results:
        print(f"\n== {r['stack']}: {'ok' if r['ok'] else 'FAILED'} ==")
        faults = r.get("faults", [])
        by_kind: dict[str, list[dict]] = defaultdict(list)
        for f in faults:
            by_kind[f["kind"]].append(f)
        print(f"{'fault':<14} {'injected':>8} {'survived':>8} {'runs hit':>8}")
        for kind in FAULTS:
            if kind in by_kind:
                fs = by_kind[kind]
                hit = sum(len(f["runs_hit"]) for f in fs)
                print(f"{kind:<14} {len(fs):>8} {sum(bool(f['survived']) for f in fs):>8} {hit:>8}")
        if r.get("left_out"):
            print(f"(left out: {r['left_out']})")
        print("runs by status:     ", r.get("runs_by_status"))
        print("runs by kind:       ", r.get("runs_by_kind"))
        print("attempts by outcome:", r.get("attempts_by_outcome"))
        print("imports by state:   ", r.get("imports_by_state"))
        print("drain:              ", r.get("drain"))
        print("message loop:       ", r.get("loop"))
        print("API answers:        ", r.get("answers"))
        print("worker exits:       ", r.get("worker_exits") or "none")
        print("lost after SIGTERM: ", r.get("lost_after_sigterm") or "none")
        for check, evidence in r["checks"].items():
            print(f"[{'ok' if not evidence else 'FAIL'}] {check}")
            for line in evidence[:25]:
                print(f"       {line}")
            if len(evidence) > 25:
                print(f"       ... {len(evidence) - 25} more")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="faults and launches, per stack")
    parser.add_argument("--stack", choices=("redis-postgres", "embedded", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=0, help="runs launched at most (0: no cap)")
    parser.add_argument("--fault-every", type=float, default=10, help="mean seconds between")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated kinds")
    parser.add_argument("--cancel-share", type=float, default=0.02, help="load steps that cancel")
    parser.add_argument("--clock-offset", type=float, default=300, help="seconds, clock faults")
    parser.add_argument("--drain-minutes", type=float, default=5, help="bound for the drain")
    parser.add_argument("--max-resends", type=int, default=20, help="re-sends per run, at most")
    parser.add_argument("--max-backlog", type=int, default=3, help="queued messages after drain")
    parser.add_argument("--redis-db", type=int, help="Redis db (default: an empty one)")
    parser.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    args = parser.parse_args()
    args.faults = [f for f in args.faults.split(",") if f]
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    stacks = ["redis-postgres", "embedded"] if args.stack == "both" else [args.stack]
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        results = [soak(kind, args, Path(tmp)) for kind in stacks]
        if args.keep:
            kept = Path(tempfile.mkdtemp(prefix="chaos-kept-"))
            for r in results:
                with contextlib.suppress(OSError):
                    shutil.copytree(r["dir"], kept / Path(r["dir"]).name)
                    r["dir"] = str(kept / Path(r["dir"]).name)
    print_report(results)
    ok = all(r["ok"] for r in results)
    options = {k: v for k, v in vars(args).items()}
    print(json.dumps({"bench": "chaos_soak", "ok": ok, "options": options, "stacks": results},
                     default=str))  # fmt: skip
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
