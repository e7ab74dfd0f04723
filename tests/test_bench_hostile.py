"""bench/hostile_inputs.py starts real stacks from this checkout and ends with its JSON figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import scaled

pytestmark = pytest.mark.slow  # starts a real `serve` per row

BENCH = Path(__file__).resolve().parents[1] / "bench" / "hostile_inputs.py"


def test_hostile_inputs_bench_measures_each_row_on_a_real_stack():
    rows = ["cookie", "tune"]
    result = subprocess.run(
        [sys.executable, str(BENCH), "--rows", ",".join(rows), "--quick", "--cap", "60"],
        capture_output=True,
        text=True,
        timeout=scaled(300),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "hostile_inputs"
    records = figures["results"]["root"]
    assert [r["row"] for r in records] == rows
    for record in records:
        assert "error" not in record, record
        assert not record["stopped"]
        assert record["statuses"] and record["web_rss_before_mb"] > 0
    cookie, tune = records
    assert "/api/health" in cookie["statuses"] and "routes_500" in cookie["fact"]
    assert isinstance(tune["statuses"]["POST tune"], int) and "epochs_planned" in tune["fact"]
