"""A store outage that reaches the job itself (Optuna's study storage talks to the same
database) is not the run's fault: the attempt hands the run back to resume from its last
checkpoint, using one automatic re-try, instead of failing it with whatever error the
library let escape. Optuna's trial bookkeeping, for one, lets an UnboundLocalError hide the
OperationalError of its storage. On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest
from sqlalchemy import exc

from jobspec.status import AttemptOutcome, RunStatus
from store.db import session_scope
from store.runs import attempts
from store.runs import service as runs_service
from store.runs.models import RunAttempt
from worker import runner


def _optuna_like_failure() -> BaseException:
    """What optuna.study._optimize._run_trial raises when its storage is refused: the
    OperationalError while handling the first, then UnboundLocalError in its finally."""
    refused = exc.OperationalError("UPDATE trials", {}, sqlite3.OperationalError("refused"))
    try:
        try:
            raise refused
        except Exception:
            raise UnboundLocalError("cannot access local variable 'updated_state'") from None
    except UnboundLocalError as err:
        err.__context__ = refused  # `from None` only hides it from tracebacks
        return err


def test_an_outage_behind_any_error_is_found_and_other_errors_are_not():
    assert runner._outage_behind(_optuna_like_failure()) is not None
    assert runner._outage_behind(ValueError("a bug")) is None
    chained = RuntimeError("wrapped")
    chained.__cause__ = _optuna_like_failure()
    assert runner._outage_behind(chained) is not None
    full = exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    assert runner._outage_behind(full) is None  # not passing: that run fails, saying why


def _running(dataset_id: int, max_attempts: int) -> int:
    with session_scope() as session:
        run_id = runs_service.create_run(
            session=session,
            kind="tune",
            name="outage",
            params={"runtime": {"max_attempts": max_attempts}},
            dataset_id=dataset_id,
        ).id
        attempts.claim(session=session, run_id=run_id, worker_host="h", device="CPU", versions={})
    return run_id


class _Link:
    """What runner._hand_back needs of a recorder: nothing left to write."""

    def take_pending(self):
        from worker.recorder import Pending

        return Pending()


@pytest.mark.parametrize("max_attempts", [2, 1])
def test_a_job_meeting_an_outage_is_handed_back_while_it_has_retries(
    store, monkeypatch, max_attempts
):
    monkeypatch.setattr(runner.queue, "enqueue", lambda kind, run_id: "task-1")
    run_id = _running(store, max_attempts)
    spec = SimpleNamespace(id=run_id, kind="tune", attempt=1)
    if runner._has_retries(spec):
        said = runner._hand_back(spec, _Link(), reason="outage", costs_retry=True)
        assert said == "handed back"
    with session_scope() as session:
        run = runs_service.get_run(session, run_id)
        record = session.get(RunAttempt, (run_id, 1))
        if max_attempts == 2:
            assert (run.status, run.retries_left) == (RunStatus.QUEUED, 0)
            assert record.outcome == AttemptOutcome.INTERRUPTED
            assert "outage; resumes from the last checkpoint" in record.note
        else:  # no re-try left: the runner records the failure instead (still running here)
            assert (run.status, run.retries_left) == (RunStatus.RUNNING, 0)
