"""A child whose parent run failed says so (a failed run stored no outputs), instead of
failing on a file that was never written. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from jobspec.status import RunStatus
from store.db import session_scope
from store.runs import attempts
from store.runs import service as runs_service
from worker import runner


def test_a_child_of_a_failed_parent_names_the_parent_and_what_to_do(store, tmp_path):
    with session_scope() as session:
        parent = runs_service.create_run(
            session=session, kind="pretrain", name="parent", params={}, dataset_id=store
        ).id
        attempts.claim(session=session, run_id=parent, worker_host="h", device="CPU", versions={})
        attempts.finish(
            session=session, run_id=parent, attempt=1, status=RunStatus.FAILED, error="boom"
        )
    with pytest.raises(runner.ParentUnusable, match=rf"parent pretrain run {parent} failed"):
        runner._fetch_parent(parent, tmp_path)
    assert not (tmp_path / "runs" / str(parent)).exists()


def test_a_child_of_a_parent_cancelled_before_any_output_says_so(store, tmp_path):
    with session_scope() as session:
        parent = runs_service.create_run(
            session=session, kind="pretrain", name="parent", params={}, dataset_id=store
        ).id
        runs_service.request_cancel(session=session, run_id=parent)  # while queued
    with pytest.raises(runner.ParentUnusable, match=rf"run {parent} was cancelled before"):
        runner._fetch_parent(parent, tmp_path)
