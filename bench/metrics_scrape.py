"""What one /metrics scrape costs the store (issue 24): the collector's queries
(backend/ops/gauges.py `read`, and each part of it) over --runs runs (mixed kinds and
states, a tenth with epoch summaries), on SQLite and on PostgreSQL (a database created for
the bench and dropped after). Each timing is a fresh session, --repeats times; median and
max in ms. Also the plan of the runs-by-state-and-kind count (it must read the
(status, kind) index alone).

    python bench/metrics_scrape.py [--runs 100000] [--repeats 7]
        [--stack sqlite|postgres|both] [--pg-admin-url URL]

Never imports tests/. Last line of stdout: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PARTS = ("run_counts", "queue", "workers", "epochs", "imports", "deliveries", "read")
# A run's status from its number: a few queued and running, most finished.
STATUS_RULES = (
    ("{n} % 1000 = 0", "QUEUED"),
    ("{n} % 1000 = 1", "RUNNING"),
    ("{n} % 7 = 0", "FAILED"),
    ("{n} % 11 = 0", "CANCELLED"),
)
COUNT_QUERY = "SELECT status, kind, count(*) FROM runs GROUP BY status, kind"


@contextlib.contextmanager
def environment(url: str | None) -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-metrics-") as tmp:
        os.environ["STACKLAB_DATA_DIR"] = tmp
        os.environ["STACKLAB_DB_STATEMENT_TIMEOUT_SECONDS"] = "900"  # the bulk insert
        os.environ.pop("DATABASE_URL", None)
        if url:
            os.environ["DATABASE_URL"] = url
        from store.db import reset_caches
        from store.settings import get_settings

        get_settings.cache_clear()
        reset_caches()
        try:
            yield
        finally:
            reset_caches()


@contextlib.contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    import sqlalchemy as sa

    name = f"stacklab_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        from store.db import reset_caches

        reset_caches()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fill(runs: int) -> str:
    """The schema, a tiny data set, `runs` runs and a tenth's epoch summaries; the plan of
    the count by state and kind."""
    import sqlalchemy as sa

    from store.db import get_engine, session_scope, upgrade_schema
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    upgrade_schema()
    dataset = register(make_demo(seed=1, n_train=40, n_test=10), name="bench-metrics")
    pg = get_engine().dialect.name == "postgresql"
    with session_scope() as session:
        session.execute(sa.text(runs_sql(pg, runs, dataset)))
        session.execute(
            sa.text(
                "INSERT INTO metric_summaries (run_id, key, last_value, last_step, "
                "best_value, best_step, goal) SELECT id, k.key, 10, 3, 10, 3, 'min' FROM runs, "
                "(SELECT 'ae01/epoch_seconds' AS key UNION ALL SELECT 'ae01/images_per_sec' "
                "UNION ALL SELECT 'ae01/loss') AS k WHERE id % 10 = 0"
            )
        )
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE" if pg else "ANALYZE"))
        explain = "EXPLAIN " if pg else "EXPLAIN QUERY PLAN "
        plan = conn.execute(sa.text(explain + COUNT_QUERY)).all()
    return " / ".join(str(row[-1]).strip() for row in plan)


def status_sql(n: str) -> str:
    from jobspec.status import RunStatus

    cases = " ".join(
        f"WHEN {rule.format(n=n)} THEN '{RunStatus[name].value}'" for rule, name in STATUS_RULES
    )
    return f"CASE {cases} ELSE '{RunStatus.SUCCEEDED.value}' END"


def runs_sql(pg: bool, runs: int, dataset: int) -> str:
    """One INSERT of `runs` runs, as wide as real ones, in the database's own SQL."""
    rows = (
        f"SELECT g AS n FROM generate_series(1, {runs}) g"
        if pg
        else f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {runs}) "
        "SELECT n FROM g"
    )
    now = "now()" if pg else "datetime('now')"
    kind = (
        "(ARRAY['pretrain','tune','finetune'])[1 + n % 3]"
        if pg
        else "CASE n % 3 WHEN 0 THEN 'pretrain' WHEN 1 THEN 'tune' ELSE 'finetune' END"
    )
    params = json.dumps({"note": "x" * 400})
    return (
        "INSERT INTO runs (kind, name, tags, status, params, seed, dataset_id, "
        "created_at, cancel_requested, versions, progress, result, attempts, "
        "max_attempts, retries_left, queued_at, fresh_start, archived, priority, "
        "needs_gpu, device, finished_at, started_at) "
        f"SELECT {kind}, 'run ' || n, '[]', {status_sql('n')}, '{params}', 0, "
        f"{dataset}, {now}, false, '{{}}', '{{}}', '{{}}', 1, 2, 1, {now}, false, "
        f"false, 0, false, 'CPU', {now}, {now} FROM ({rows}) AS numbers"
    )


def timings(repeats: int) -> dict[str, dict[str, float]]:
    from backend.ops import gauges
    from store import clock
    from store.db import session_scope

    out = {}
    for part in PARTS:
        times = []
        for _ in range(repeats):
            with session_scope() as session:
                now = clock.now(session)
                function = getattr(gauges, part)
                start = time.perf_counter()
                function(session, now) if part in ("queue", "workers") else function(session)
                times.append((time.perf_counter() - start) * 1000)
        out[part] = {"median_ms": statistics.median(times), "max_ms": max(times)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--stack", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg-admin-url", default=os.environ.get("STACKLAB_BENCH_PG", PG_ADMIN_URL))
    args = parser.parse_args()
    result: dict[str, object] = {"runs": args.runs}
    for stack in ("sqlite", "postgres"):
        if args.stack not in (stack, "both"):
            continue
        with contextlib.ExitStack() as scope:
            url = (
                scope.enter_context(pg_database(args.pg_admin_url)) if stack == "postgres" else None
            )
            scope.enter_context(environment(url))
            plan = fill(args.runs)
            parts = timings(args.repeats)
        print(f"{stack}, {args.runs} runs; count plan: {plan}")
        for part, figures in parts.items():
            median, longest = figures["median_ms"], figures["max_ms"]
            print(f"  {part:12s} median {median:7.1f} ms  max {longest:7.1f} ms")
        result[stack] = {"plan": plan, **parts}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
