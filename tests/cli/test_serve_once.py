"""One `stacklab serve` per data directory and per port: a second one is refused at once
with a message naming what is taken (and by which pid), starts nothing and leaves the
first one working; a lock left by a serve killed with kill -9 blocks nobody."""

from __future__ import annotations

import signal

import pytest

from cli.instance import LOCK_NAME
from tests.cli.serving import group_gone, kill_group, start_serve
from tests.stack import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """A serve that is up, for the module's tests to start a second one beside."""
    serve = start_serve(tmp_path_factory.mktemp("first"), name="first").up()
    yield serve
    try:
        assert serve.stop() == 0, serve.output()[-3000:]
    finally:
        kill_group(serve.proc.pid)


def test_a_second_serve_on_the_same_data_dir_is_refused_naming_it_and_the_holder(first, tmp_path):
    second = start_serve(tmp_path, name="second", data_dir=first.data_dir)  # another port
    code = second.exited()
    said = second.output()
    assert code != 0, said
    assert str(first.data_dir.resolve()) in said and f"pid {first.proc.pid}" in said, said
    assert "Traceback" not in said, said
    wait_for(lambda: group_gone(second.proc.pid), timeout=60, what="nothing of it left")
    assert (first.data_dir / LOCK_NAME).read_text().strip() == str(first.proc.pid)


def test_a_second_serve_on_the_same_port_is_refused_naming_it_and_starts_no_worker(first, tmp_path):
    second = start_serve(tmp_path, name="second-port", port=first.port)  # its own data dir
    code = second.exited()
    said = second.output()
    assert code != 0, said
    assert f"port {first.port}" in said and "already in use" in said, said
    assert "celery" not in said.lower() and "Traceback" not in said, said
    wait_for(lambda: group_gone(second.proc.pid), timeout=60, what="no worker of it left")


def test_the_first_serve_keeps_answering_and_its_worker_keeps_taking_jobs(first):
    # Sorted after the refusals: they changed nothing of it.
    assert first.proc.poll() is None and first.answers()
    run_id = first.launch(epochs=2)
    done = wait_for(
        lambda: (run := first.run(run_id))["status"] == "succeeded" and run,
        timeout=180,
        what=f"run {run_id} to succeed",
    )
    assert done["status"] == "succeeded"
    assert "restarting it" not in first.output()


def test_a_lock_left_by_a_serve_killed_with_kill_9_does_not_block_the_next(tmp_path):
    crashed = start_serve(tmp_path, name="crashed").up()
    lock = crashed.data_dir / LOCK_NAME
    assert lock.read_text().strip() == str(crashed.proc.pid)
    crashed.proc.send_signal(signal.SIGKILL)  # serve alone: its children are told by the kernel
    crashed.proc.wait()
    try:
        # Its web app and worker do not outlive it (they would hold the port, take jobs).
        wait_for(lambda: group_gone(crashed.proc.pid), timeout=120, what="its children to end")
    finally:
        kill_group(crashed.proc.pid)
    assert lock.exists()  # the stale file is still there, naming a dead pid
    after = start_serve(tmp_path, name="after", data_dir=crashed.data_dir, port=crashed.port)
    try:
        after.up()
        assert lock.read_text().strip() == str(after.proc.pid)
    finally:
        code = after.stop()
        kill_group(after.proc.pid)
    assert code == 0, after.output()[-3000:]
