"""bench/scheduler.py, short: claims over a small queue on both stores (every claim found a
run, the table and the JSON agree), and an urgent run gets in while a low-priority run
trains on a real worker (embedded stack): it starts, and the running run was set aside.

No timing is asserted: the suite runs on busy machines. The figures are the bench's to
report (README "Performance")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import scaled

pytestmark = pytest.mark.slow  # a real worker trains for (b): about a minute

BENCH = Path(__file__).resolve().parents[1] / "bench" / "scheduler.py"


def run_bench(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=scaled(600)
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(lines[-1])
    assert figures["bench"] == "scheduler"
    return figures


def test_claims_on_both_stores_take_a_run_each_time():
    figures = run_bench("--sizes", "50,200", "--claims", "10", "--stack", "both", "--skip-preempt")
    assert set(figures["claim"]) == {"sqlite", "postgres"}
    for rows in figures["claim"].values():
        assert [row["queued"] for row in rows] == [50, 200]
        for row in rows:
            assert "plan_error" not in row, row
            for key in ("claim_next_ms", "baseline_claim_ms", "plan_ms", "plan_read_ms"):
                assert 0 < row[key]["p50"] <= row[key]["p95"] <= row[key]["max"], (key, row)
            assert row["plan_placed"] > 0
    assert figures["urgent"] == [] and figures["claim_target_met"] in (True, False)


def test_an_urgent_run_starts_while_a_low_priority_run_trains():
    figures = run_bench(
        "--stack", "sqlite", "--skip-claims", "--train-images", "300", "--warm-epochs", "2"
    )
    [urgent] = figures["urgent"]
    assert urgent["stack"] == "embedded"
    assert urgent["urgent_status"] == "succeeded", urgent
    assert urgent["launch_to_start_s"] > 0 and urgent["epoch_s"] > 0
    assert any(a.endswith("preempted") for a in urgent["low_attempts"]), urgent
