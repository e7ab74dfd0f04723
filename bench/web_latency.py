"""Page and API latency as the store grows: the routes themselves, at 1k/10k/100k runs.

Seeds a store directly (SQLite, the embedded default, or PostgreSQL with --db postgres),
starts the real app under uvicorn and times each page and JSON endpoint over HTTP,
sequentially. Every request carries a query parameter of its own, so the poll cache's
kept answers (backend/conditional.py: Answers) never serve it: what is timed is the route
(behind the cache's one validator query, as a poll that finds a change pays).

Timed: the runs page (HTML), /api/runs/table (default order; sorted by a parameter; by a
metric; by data set; by tags; filtered by a parameter and a metric; the next page by
cursor), the runs CSV's first chunk (a tag's runs), a run page, its curves and a compare of
10.

    python bench/web_latency.py [--runs 1000,10000] [--epochs 100] [--requests 40]
    python bench/web_latency.py --db postgres --runs 100000 --epochs 10
    python bench/web_latency.py --quick        # seconds: the suite's smoke test
    python bench/web_latency.py --db-url postgresql+psycopg://... --runs 100000 --epochs 2
        # an existing database, seeded the first time, kept (migrated to head each time)

Prints a table per size, then how each route's p95 grows with the store; last line of
stdout: one JSON object with every figure; "ratio" is the worst p95 over the 100 ms target
(below 1 means every route meets it at every size).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobspec.status import RunStatus  # noqa: E402
from tests.stack import create_pg_database, stack_env, start_web  # noqa: E402

TARGET_MS = 100.0
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")
BATCH = 1000  # runs inserted per statement batch
TAG_RUNS = 100  # runs per batch tag (the CSV's export)


def seed(n_runs: int, epochs: int) -> list[int]:
    """Finished finetune runs with full metric series, summaries and parameter rows,
    inserted in bulk (the rows the app itself writes for a run). A store that already
    holds runs (--db-url) is only migrated: its runs are timed as they are."""
    from sqlalchemy import func, insert, select

    from store.db import session_scope, upgrade_schema
    from store.runs import values
    from store.runs.models import Metric, MetricSummary, Run, RunParam
    from store.timeutil import utcnow
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    upgrade_schema()
    with session_scope() as session:
        held = session.scalar(select(func.max(Run.id))) or 0
    if held:
        return list(range(1, held + 1))
    dataset_id = register(make_demo(seed=0, n_train=100, n_test=20), name="bench")
    rng = random.Random(0)
    start = utcnow() - timedelta(days=30)
    for first in range(0, n_runs, BATCH):
        runs, params, metrics, summaries = [], [], [], []
        for i in range(first, min(first + BATCH, n_runs)):
            run_id = i + 1
            created = start + timedelta(seconds=i * 10)
            run_params = {
                "encoder": "stacked",
                "augment": i % 2 == 0,
                "seed": i % 5,
                "learning_rate": rng.choice((0.0001, 0.001, 0.01, 0.1)),
                "batch_size": rng.choice((32, 64, 128)),
                "optimizer": rng.choice(("adam", "sgd")),
                "augmentation": {"zoom_range": rng.choice((0.0, 0.1, 0.2))},
            }
            runs.append(
                {
                    "id": run_id,
                    "kind": "finetune",
                    "name": f"bench run {i}",
                    "status": RunStatus.SUCCEEDED,
                    "params": run_params,
                    "seed": i % 5,
                    "dataset_id": dataset_id,
                    "tags": [f"batch:{i // TAG_RUNS}"],
                    "created_at": created,
                    "queued_at": created,
                    "started_at": created,
                    "finished_at": created + timedelta(seconds=rng.randrange(60, 3600)),
                    "notes": "flip and zoom" if i % 50 == 0 else None,
                    "result": {
                        "training": {"best_epoch": epochs // 2, "epochs_run": epochs},
                        "evaluation": {"accuracy": rng.random(), "balanced_accuracy": rng.random()},
                    },
                }
            )
            params += values.rows_of(run_id, run_params)
            for key in KEYS:
                series = [rng.random() for _ in range(epochs)]
                metrics += [
                    {
                        "run_id": run_id,
                        "key": f"finetune/{key}",
                        "step": step + 1,
                        "value": v,
                        "wall_time": 0.0,
                    }
                    for step, v in enumerate(series)
                ]
                best = min(series) if "loss" in key else max(series)
                summaries.append(
                    {
                        "run_id": run_id,
                        "key": f"finetune/{key}",
                        "last_value": series[-1],
                        "last_step": epochs,
                        "best_value": best,
                        "best_step": series.index(best) + 1,
                        "kept_value": series[-1],
                        "kept_step": epochs,
                        "goal": "min" if "loss" in key else "max",
                    }
                )
        with session_scope() as session:
            session.execute(insert(Run), runs)
            session.execute(insert(RunParam), params)
            for part in range(0, len(metrics), 20_000):
                session.execute(insert(Metric), metrics[part : part + 20_000])
            session.execute(insert(MetricSummary), summaries)
    with session_scope() as session:  # the planner's statistics, as a live store has them
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy import text

            session.execute(text("SELECT setval('runs_id_seq', :n)"), {"n": max(n_runs, 1)})
            session.execute(text("ANALYZE"))
        else:
            from sqlalchemy import text

            session.execute(text("ANALYZE"))
    return list(range(1, n_runs + 1))


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds() -> float | None:
    """CPU time the PostgreSQL server processes serving this store's database have used
    (their /proc stat, found in pg_stat_activity; None on SQLite, or where the server is
    not on this machine). The server's share of a request, which neither the web's CPU nor
    a busy machine's wall clock shows."""
    from sqlalchemy import text

    from store.db import get_engine

    engine = get_engine()
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        times = [cpu_seconds(pid) for pid in pids]
    return None if any(t is None for t in times) else sum(t for t in times if t is not None)


class Timer:
    """Sequential GETs, each with a query parameter of its own (no kept answer serves it).

    Besides wall-clock times, the web process's own CPU time per request ("cpu_ms": on
    SQLite that includes the database's work, on PostgreSQL not) and, on PostgreSQL, the
    server processes' CPU time per request ("db_cpu_ms", database_cpu_seconds): figures
    that a busy machine inflates far less than the wall clock, so growth with the store
    shows even where other work shares the cores."""

    def __init__(self, client, requests: int, pid: int | None = None) -> None:
        self.client, self.requests, self.count, self.pid = client, requests, 0, pid

    def url(self, path: str, query: dict) -> str:
        self.count += 1
        return f"{path}?{urlencode({**query, '_bench': self.count})}"

    def time(self, path: str, query: dict, *, first_chunk: bool = False) -> dict:
        self.get(path, query, first_chunk)  # warm the process (imports, statement cache)
        samples = []
        cpu_before = cpu_seconds(self.pid) if self.pid else None
        db_before = database_cpu_seconds()
        for _ in range(self.requests):
            samples.append(self.get(path, query, first_chunk))
        cpu_after = cpu_seconds(self.pid) if self.pid else None
        db_after = database_cpu_seconds()
        samples.sort()
        out = {
            "median_ms": round(statistics.median(samples), 2),
            "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 2),
        }
        if cpu_before is not None and cpu_after is not None:
            out["cpu_ms"] = round((cpu_after - cpu_before) * 1000 / self.requests, 1)
        if db_before is not None and db_after is not None:
            out["db_cpu_ms"] = round((db_after - db_before) * 1000 / self.requests, 1)
        return out

    def get(self, path: str, query: dict, first_chunk: bool) -> float:
        """Milliseconds to the whole answer, or to its first chunk: the rest is read all the
        same (untimed), so the server's export slot is given back as a client's would be
        before the next request (a dropped stream holds it until the server notices)."""
        url = self.url(path, query)
        started = time.perf_counter()
        elapsed = None
        with self.client.stream("GET", url) as response:
            if response.status_code != 200:
                response.read()
                raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:300]}")
            for _ in response.iter_bytes():
                if first_chunk and elapsed is None:
                    elapsed = time.perf_counter() - started
        if elapsed is None:
            elapsed = time.perf_counter() - started
        return elapsed * 1000


def routes(ids: list[int], client) -> dict[str, tuple[str, dict, bool]]:
    """name -> (path, query, first chunk only)."""
    one, ten = ids[len(ids) // 2], ",".join(str(i) for i in ids[-10:])
    cols = "param.learning_rate,param.optimizer,metric.finetune/val_accuracy"
    by_metric = {"sort": "metric.finetune/val_accuracy", "order": "desc", "limit": 50}
    cursor = client.get("/api/runs/table", params=by_metric).json()["next_cursor"]
    tag = f"batch:{(len(ids) - 1) // TAG_RUNS // 2}"
    return {
        "runs page (HTML)": ("/runs", {}, False),
        "table (API)": ("/api/runs/table", {"limit": 50}, False),
        "table by param": (
            "/api/runs/table",
            {"sort": "param.learning_rate", "order": "desc", "limit": 50, "columns": cols},
            False,
        ),
        "table by metric": ("/api/runs/table", {**by_metric, "columns": cols}, False),
        "table by metric p2": ("/api/runs/table", {**by_metric, "cursor": cursor}, False),
        "table by data set": ("/api/runs/table", {"sort": "dataset", "limit": 50}, False),
        "table by tags": ("/api/runs/table", {"sort": "tags", "limit": 50}, False),
        "table filtered": (
            "/api/runs/table",
            {
                "filter": "param.learning_rate <= 0.001 and metric.finetune/val_accuracy >= 0.5",
                "sort": "metric.finetune/val_loss",
                "order": "asc",
                "columns": cols,
            },
            False,
        ),
        "page by metric (HTML)": ("/runs", {"sort": "metric.finetune/val_accuracy"}, False),
        "csv first chunk": ("/api/runs/table.csv", {"filter": f"tag = {tag}"}, True),
        "run page (HTML)": (f"/runs/{one}", {}, False),
        "run curves (API)": (f"/api/runs/{one}/curves", {}, False),
        "compare 10 (HTML)": ("/compare", {"ids": ten}, False),
    }


def measure(n_runs: int, epochs: int, requests: int, db: str, db_url: str | None = None) -> dict:
    """Seed a fresh store of n_runs (or use db_url's) and time every route."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"STACKLAB_DATA_DIR": tmp}
        drop = None
        if db_url:
            env["DATABASE_URL"] = db_url
        elif db == "postgres":
            env["DATABASE_URL"], drop = create_pg_database()
        try:
            with stack_env(env):
                t0 = time.perf_counter()
                ids = seed(n_runs, epochs)
                seed_s = time.perf_counter() - t0
                with start_web(os.environ, log_level="warning") as web:
                    import httpx

                    with httpx.Client(base_url=web.url, timeout=120) as client:
                        timer = Timer(client, requests, web.proc.pid)
                        results = {
                            name: timer.time(path, query, first_chunk=first)
                            for name, (path, query, first) in routes(ids, client).items()
                        }
        finally:
            if drop:
                drop()
    return {"runs": n_runs, "epochs": epochs, "seed_s": round(seed_s, 1), "results": results}


def _growth(a: dict, b: dict, key: str) -> str:
    return f"{a[key]:>7.1f} -> {b[key]:>7.1f} ms (x{b[key] / max(a[key], 0.1):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="1000", help="store sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="200 runs x 3 epochs, 5 requests")
    parser.add_argument(
        "--db-url", help="time this existing database (seeded only while it holds no run; kept)"
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.runs.split(",")]
    if args.quick:
        sizes, args.epochs, args.requests = [200], 3, 5
    sizes_out = []
    for n in sizes:
        out = measure(n, args.epochs, args.requests, args.db, args.db_url)
        sizes_out.append(out)
        print(
            f"\n{n:,} runs x {args.epochs} epochs x {len(KEYS)} metrics seeded in "
            f"{out['seed_s']:.1f} s; {args.db}, uvicorn, {args.requests} sequential requests each"
        )
        print(f"{'route':<24} {'median ms':>10} {'p95 ms':>8} {'cpu ms':>8} {'db cpu':>8}")
        for name, r in out["results"].items():
            cpu = f"{r['cpu_ms']:>8.1f}" if "cpu_ms" in r else f"{'-':>8}"
            cpu += f" {r['db_cpu_ms']:>8.1f}" if "db_cpu_ms" in r else ""
            print(f"{name:<24} {r['median_ms']:>10.1f} {r['p95_ms']:>8.1f} {cpu}")
    if len(sizes_out) > 1:
        first, last = sizes_out[0], sizes_out[-1]
        print(f"\ngrowth from {first['runs']:,} to {last['runs']:,} runs: p95, and CPU per request")
        for name in first["results"]:
            a, b = first["results"][name], last["results"][name]
            line = f"{name:<24} {_growth(a, b, 'p95_ms')}"
            if "cpu_ms" in a and "cpu_ms" in b:
                line += f"   cpu {_growth(a, b, 'cpu_ms')}"
            print(line)
    worst = max(r["p95_ms"] for out in sizes_out for r in out["results"].values())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"\nworst p95 {worst:.1f} ms against a {TARGET_MS:.0f} ms target (load {load})")
    print(
        json.dumps(
            {
                "bench": "web_latency",
                "db": args.db,
                "epochs": args.epochs,
                "sizes": sizes_out,
                "worst_p95_ms": worst,
                "load_average": load,
                "cpus": os.cpu_count(),
                "ratio": round(worst / TARGET_MS, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
