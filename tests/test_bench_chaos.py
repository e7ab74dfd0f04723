"""bench/chaos_soak.py, short: quick runs of every kind through real workers on both stacks
while workers are killed, stopped and skewed, the database refuses, the broker is flushed
and the embedded store's disk fills; its JSON must say every check held.

The two stacks soak at the same time (one soak process each: their own store, broker
database, web and workers), each for one round of the load's jobs, and the fault kinds are
shared out between them so that every kind is injected at least once in the short window:
the broker flush on both, the rest on one stack each (FAULTS_BY_STACK)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.stack import scaled

pytestmark = pytest.mark.slow  # two real stacks side by side, a minute of faults on each

BENCH = Path(__file__).resolve().parents[1] / "bench" / "chaos_soak.py"

# Every kind of bench/chaos_soak.py's FAULTS on a stack that has it (db-refuse needs the
# PostgreSQL proxy, disk-full the embedded store), the broker flush on both (Redis FLUSHDB
# and the embedded queue's dropped messages are different faults), so that each stack's
# shuffled deck goes round once in the minute with a fault every 1-3 s between them (a
# fault counts once it started: one that runs past the minute is waited for). The two
# graceful restarts (sigterm, clock-offset) go to Redis + PostgreSQL: an embedded worker
# takes 40-50 s to stop on SIGTERM on a busy machine, even idle, so one of them there
# filled the minute alone (seen twice), and a kill -9 restarts an embedded worker too.
FAULTS_BY_STACK = {
    "redis-postgres": ("db-refuse", "broker-flush", "sigstop", "clock-offset", "sigterm"),
    "embedded": ("disk-full", "broker-flush", "kill9-main", "kill9-child"),
}


def bench_faults() -> tuple[str, ...]:
    """The bench's FAULTS, read from its source (importing it would start nothing, but it
    puts the checkout on sys.path)."""
    for node in ast.parse(BENCH.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "FAULTS" for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f"no FAULTS in {BENCH}")


FAULTS = bench_faults()
# One round of the soak's load (its Load.JOBS: a pretrain with its finetune, a finetune, a
# tune of two parts, an ablation of four runs, an upload, a finetune) launches 10 runs.
RUNS = 10


def soak(stack: str) -> subprocess.CompletedProcess:
    faults = ",".join(FAULTS_BY_STACK[stack])
    return subprocess.run(
        [sys.executable, str(BENCH), "--stack", stack, "--minutes", f"{scaled(1):g}",
         "--runs", str(RUNS), "--workers", "2", "--fault-every", "2", "--faults", faults,
         "--seed", "0"],
        capture_output=True,
        text=True,
        timeout=scaled(1500),
    )  # fmt: skip


def test_a_short_chaos_soak_loses_no_run_no_epoch_and_no_process():
    assert set().union(*FAULTS_BY_STACK.values()) == set(FAULTS)  # none left out

    with ThreadPoolExecutor(len(FAULTS_BY_STACK)) as pool:
        results = dict(zip(FAULTS_BY_STACK, pool.map(soak, FAULTS_BY_STACK), strict=True))
    fired: set[str] = set()
    stacks: dict[str, dict] = {}
    for name, result in results.items():
        lines = result.stdout.strip().splitlines()
        assert lines, f"{name}:\n{result.stderr[-3000:]}"
        figures = json.loads(lines[-1])
        assert figures["bench"] == "chaos_soak"
        report = "\n".join(lines[:-1])  # the tables, with every failed check's evidence
        assert [s["stack"] for s in figures["stacks"]] == [name]
        (stack,) = figures["stacks"]
        stacks[name] = stack
        assert stack["faults"], f"{name}: no fault was injected\n{report}"
        assert stack["runs_by_status"], f"{name}: no run was launched\n{report}"
        assert figures["ok"], report + "\n" + result.stderr[-3000:]
        assert result.returncode == 0
        fired |= {fault["kind"] for fault in stack["faults"]}
        if "disk-full" in FAULTS_BY_STACK[name]:
            assert "disk-full" in stack["fault_kinds"], stack.get("left_out")
    injected = {n: [f["kind"] for f in s["faults"]] for n, s in stacks.items()}
    assert fired == set(FAULTS), f"never injected: {sorted(set(FAULTS) - fired)}; {injected}"
