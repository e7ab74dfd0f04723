"""Page and API latency with a database of 1,000 runs x 100 epochs of metrics.

Seeds an SQLite store (the embedded default) directly, starts the real app under uvicorn
and times each page and its JSON endpoint over HTTP, sequentially.

    python bench/web_latency.py [--runs 1000] [--epochs 100] [--requests 40]

Last line of stdout: one JSON object with the figures; "ratio" is the worst p95 over the
100 ms target (below 1 means every endpoint meets it).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobspec.status import RunStatus  # noqa: E402
from tests.stack import stack_env, start_web  # noqa: E402

TARGET_MS = 100.0
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds")


def seed(n_runs: int, epochs: int) -> list[int]:
    """Finished finetune runs with full metric series and summaries, inserted in bulk."""
    from sqlalchemy import insert

    from store.db import session_scope, upgrade_schema
    from store.runs.models import Metric, MetricSummary, Run
    from store.timeutil import utcnow
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    upgrade_schema()
    dataset_id = register(make_demo(seed=0, n_train=100, n_test=20), name="bench")
    rng = random.Random(0)
    ids = []
    with session_scope() as session:
        for i in range(n_runs):
            run = Run(
                kind="finetune",
                name=f"bench run {i}",
                status=RunStatus.SUCCEEDED,
                params={"encoder": "stacked", "augment": i % 2 == 0, "seed": i % 5},
                seed=i % 5,
                dataset_id=dataset_id,
                tags=[f"batch:{i // 100}"],
                started_at=utcnow(),
                finished_at=utcnow(),
                result={
                    "training": {"best_epoch": epochs // 2, "epochs_run": epochs},
                    "evaluation": {"accuracy": rng.random(), "balanced_accuracy": rng.random()},
                },
            )
            session.add(run)
            session.flush()
            ids.append(run.id)
            rows, summaries = [], []
            for key in KEYS:
                values = [rng.random() for _ in range(epochs)]
                rows += [
                    {
                        "run_id": run.id,
                        "key": f"finetune/{key}",
                        "step": step + 1,
                        "value": v,
                        "wall_time": 0.0,
                    }
                    for step, v in enumerate(values)
                ]
                best = min(values) if "loss" in key else max(values)
                summaries.append(
                    {
                        "run_id": run.id,
                        "key": f"finetune/{key}",
                        "last_value": values[-1],
                        "last_step": epochs,
                        "best_value": best,
                        "best_step": values.index(best) + 1,
                        "goal": "min" if "loss" in key else "max",
                    }
                )
            session.execute(insert(Metric), rows)
            session.execute(insert(MetricSummary), summaries)
    return ids


def timings(client, url: str, n: int) -> dict:
    client.get(url)  # warm caches
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}")
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, stack_env({"STACKLAB_DATA_DIR": tmp}):
        t0 = time.perf_counter()
        ids = seed(args.runs, args.epochs)
        seed_s = time.perf_counter() - t0
        with start_web(os.environ, log_level="warning") as web:
            import httpx

            one, ten = ids[len(ids) // 2], ",".join(str(i) for i in ids[-10:])
            urls = {
                "runs page (HTML)": "/runs",
                "runs table (API)": "/api/runs/table?limit=50",
                "run page (HTML)": f"/runs/{one}",
                "run curves (API)": f"/api/runs/{one}/curves",
                "compare 10 (HTML)": f"/compare?ids={ten}",
                "compare 10 (API)": f"/api/compare?ids={ten}",
            }
            with httpx.Client(base_url=web.url, timeout=30) as client:
                results = {name: timings(client, url, args.requests) for name, url in urls.items()}
    print(
        f"{args.runs} runs x {args.epochs} epochs x {len(KEYS)} metrics seeded in {seed_s:.1f} s; "
        f"SQLite, uvicorn, {args.requests} sequential requests each\n"
    )
    print(f"{'endpoint':<22} {'median ms':>10} {'p95 ms':>8}")
    for name, r in results.items():
        print(f"{name:<22} {r['median_ms']:>10.1f} {r['p95_ms']:>8.1f}")
    worst = max(r["p95_ms"] for r in results.values())
    print(f"\nworst p95 {worst:.1f} ms against a {TARGET_MS:.0f} ms target")
    print(
        json.dumps(
            {
                "bench": "web_latency",
                "runs": args.runs,
                "epochs": args.epochs,
                "metrics_rows": args.runs * args.epochs * len(KEYS),
                "results": results,
                "worst_p95_ms": worst,
                "ratio": round(worst / TARGET_MS, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
