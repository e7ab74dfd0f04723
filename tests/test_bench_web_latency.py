"""bench/web_latency.py, short (--quick, on SQLite and PostgreSQL): every route it times
answers 200 with a cache-bypassing query of its own, and its last line is the JSON the
README quotes. No timing is asserted: the suite runs on busy machines; the figures are the
bench's to report (README "Performance")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import scaled

pytestmark = pytest.mark.slow  # seeds a store and starts the web: about half a minute

BENCH = Path(__file__).resolve().parents[1] / "bench" / "web_latency.py"
ROUTES = {
    "runs page (HTML)",
    "table (API)",
    "table by param",
    "table by metric",
    "table by metric p2",
    "table filtered",
    "page by metric (HTML)",
    "csv first chunk",
}


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_the_quick_bench_times_every_table_route_on_each_store(db):
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--db", db],
        capture_output=True,
        text=True,
        timeout=scaled(600),
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(lines[-1])
    assert figures["bench"] == "web_latency" and figures["db"] == db
    [size] = figures["sizes"]
    assert size["runs"] == 200
    assert set(size["results"]) >= ROUTES
    for timing in size["results"].values():
        assert 0 < timing["median_ms"] <= timing["p95_ms"]
    assert figures["ratio"] == pytest.approx(figures["worst_p95_ms"] / 100, abs=1e-3)
