"""bench/chaos_soak.py, short: quick runs of every kind through real workers on both stacks
while workers are killed, stopped and skewed, the database refuses, the broker is flushed
and the embedded store's disk fills; its JSON must say every check held."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import scaled

pytestmark = pytest.mark.slow  # two real stacks, a minute of faults each: about three in all

BENCH = Path(__file__).resolve().parents[1] / "bench" / "chaos_soak.py"


def test_a_short_chaos_soak_loses_no_run_no_epoch_and_no_process():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--stack", "both", "--minutes", "1", "--runs", "16", "--workers", "2",
         "--fault-every", "8", "--seed", "0"],
        capture_output=True,
        text=True,
        timeout=scaled(1500),
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr[-3000:]
    figures = json.loads(lines[-1])
    assert figures["bench"] == "chaos_soak"
    report = "\n".join(lines[:-1])  # the tables, with every failed check's evidence
    assert [s["stack"] for s in figures["stacks"]] == ["redis-postgres", "embedded"]
    for stack in figures["stacks"]:
        assert stack["faults"], f"{stack['stack']}: no fault was injected\n{report}"
        assert stack["runs_by_status"], f"{stack['stack']}: no run was launched\n{report}"
    assert figures["ok"], report + "\n" + result.stderr[-3000:]
    assert result.returncode == 0
