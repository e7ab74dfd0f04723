"""The web process's footprint: start time, resident memory, heavy modules loaded at start.

Starts uvicorn serving backend.main twice in fresh processes on an empty SQLite store:
"lazy" as the app is, and "eager", which first imports what the web used to import at
start (Plotly's figures, Optuna's plots with matplotlib, SciPy's stats, Pillow, NumPy), so
the lazy imports' saving is measured on this machine in one run.

    python bench/web_footprint.py [--repeats 2]

Last line of stdout: one JSON object with the figures (RSS in MiB, times in seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.stack import Web, free_port, rss_mb, stack_env, wait_for  # noqa: E402

HEAVY = (
    "plotly.graph_objects",
    "optuna",
    "optuna.visualization",
    "matplotlib",
    "scipy.stats",
    "PIL.Image",
    "markdown_it",
    "numpy",
    "celery",
    "sqlalchemy",
)
EAGER = ("plotly.graph_objects", "optuna.visualization", "scipy.stats", "PIL.Image", "numpy")
TARGET_RSS_MB = 150.0


def serve(preload: tuple[str, ...], port: int) -> subprocess.Popen:
    """uvicorn serving backend.main, after importing `preload` in the same process."""
    code = "".join(f"import {name}\n" for name in preload)
    code += f"import uvicorn\nuvicorn.run('backend.main:app', host='127.0.0.1', port={port},"
    code += " log_level='warning')\n"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ))


def modules_at_start(preload: tuple[str, ...]) -> list[str]:
    """Which HEAVY modules are in sys.modules once backend.main is imported."""
    code = "".join(f"import {name}\n" for name in preload)
    code += "import json, sys\nimport backend.main\n"
    code += f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(preload: tuple[str, ...]) -> dict:
    """Seconds until /api/health answers, RSS then and after the first pages."""
    import httpx

    port = free_port()
    started = time.perf_counter()
    web = Web(f"http://127.0.0.1:{port}", serve(preload, port))
    try:
        wait_for(web.answers, timeout=60, what="the web app to answer", every=0.05)
        start_s = time.perf_counter() - started
        rss_start = rss_mb(web.proc.pid)
        for page in ("/runs", "/api/runs/table", "/api/queue", "/datasets"):
            httpx.get(web.url + page, timeout=30)
        rss_pages = rss_mb(web.proc.pid)
    finally:
        web.stop()
    return {"start_s": start_s, "rss_start_mb": rss_start, "rss_after_pages_mb": rss_pages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, stack_env({"STACKLAB_DATA_DIR": tmp}):
        measure(())  # the first start creates the schema: not counted
        for name, preload in (("lazy", ()), ("eager", EAGER)):
            runs = [measure(preload) for _ in range(args.repeats)]
            results[name] = {
                key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]
            }
            results[name]["heavy_modules_at_start"] = modules_at_start(preload)

    print(f"{'web process':<10} {'start s':>8} {'RSS MiB':>8} {'after pages':>12}  heavy modules")
    for name, r in results.items():
        print(
            f"{name:<10} {r['start_s']:>8.2f} {r['rss_start_mb']:>8.1f} "
            f"{r['rss_after_pages_mb']:>12.1f}  {', '.join(r['heavy_modules_at_start'])}"
        )
    saved = results["eager"]["rss_start_mb"] - results["lazy"]["rss_start_mb"]
    print(f"lazy imports save {saved:.0f} MiB at start; target < {TARGET_RSS_MB:.0f} MiB")
    summary = {
        "bench": "web_footprint",
        **{f"{name}_{key}": value for name, r in results.items() for key, value in r.items()},
        "target_rss_mb": TARGET_RSS_MB,
        "ratio": round(results["lazy"]["rss_start_mb"] / TARGET_RSS_MB, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
