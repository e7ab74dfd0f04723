"""A worker told to stop (SIGTERM: docker stop, a redeploy, Ctrl-C on serve) hands its
running run back to the queue, and another worker resumes it from its last checkpoint.

This module sorts after the others of tests/queue: it leaves the stack one worker short.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from jobspec.scheduling import Lane
from tests.queue.test_faults import (
    SIX_EPOCHS,
    attempt_rows,
    checkpointed,
    child_pid,
    steps,
    two_idle_workers,
)
from tests.queue.test_hostile_imports import children, ended, is_parser, read, slow_zip
from tests.queue.test_hostile_imports import start as start_import
from tests.queue.test_queue import finished, launch, workers_online
from tests.stack import scaled, wait_for

pytestmark = pytest.mark.slow


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_worker_told_to_stop_hands_its_run_back_to_resume_elsewhere(stack):
    two_idle_workers()
    run = launch(kind="finetune", dataset="demo-tiny", params=SIX_EPOCHS)[0]
    busy = wait_for(lambda: checkpointed(run.id, 1), timeout=120, what="epoch 1 stored")
    main_pid = parent_pid(child_pid(busy))
    proc = next(p for p in stack["workers"].procs if p.pid == main_pid)
    os.kill(main_pid, signal.SIGTERM)  # docker stop: only the main process is signalled
    proc.wait(timeout=scaled(60))  # it exits by itself, at the job's next batch
    done = finished(run.id)
    assert done.status == "succeeded", done.error
    rows = attempt_rows(run.id)
    assert [(a.number, a.outcome) for a in rows] == [(1, "interrupted"), (2, "succeeded")]
    assert rows[1].resumed_from["epoch"] >= 1
    assert steps(run.id) == [1, 2, 3, 4, 5, 6]


def test_a_worker_told_to_stop_mid_import_hands_the_import_back(stack, tmp_path):
    wait_for(lambda: workers_online() >= 1, timeout=120, what="a worker online")
    import_id = start_import(slow_zip(tmp_path / "slow.zip"), "stopped-import", resize=True)
    row = wait_for(lambda: (r := read(import_id)).state == "running" and r, timeout=60, what="it")
    child = int(row.worker.rsplit(":", 1)[1])
    wait_for(lambda: any(is_parser(c) for c in children(child)), timeout=60, what="the parser")
    main_pid = parent_pid(child)
    proc = next(p for p in stack["workers"].procs if p.pid == main_pid)
    os.kill(main_pid, signal.SIGTERM)
    proc.wait(timeout=scaled(60))
    row = read(import_id)
    assert (row.state, row.worker, row.message) == ("queued", None, None)  # not failed
    stack["workers"].start("cpu-lane-after-stop", Lane.CPU)  # the next CPU-lane worker takes it
    row = ended(import_id, timeout=120)
    assert row.worker and int(row.worker.rsplit(":", 1)[1]) != child
    assert "STACKLAB_IMPORT_TIMEOUT_SECONDS" in row.message  # the file is too slow anywhere
