""" "Evaluate now" through a real worker, broker and database: a finetune cancelled
mid-training is scored on its test split, its status kept, a duplicate message harmless."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.runs import partial
from store import queue
from store.artifacts import service as artifacts_service
from store.db import session_scope
from store.runs import launch as launcher
from store.runs import metrics as metrics_service
from store.runs.models import Run
from store.runs.schemas import RunCreate, RunRead
from tests.stack import wait_for

pytestmark = pytest.mark.slow
DONE = re.compile(r"Task stacklab\.evaluate\[[^\]]+\] succeeded in [\d.]+s: '([^']*)'")


def read(run_id: int) -> RunRead:
    with session_scope() as session:
        return RunRead.model_validate(session.get(Run, run_id))


def epochs_logged(run_id: int) -> int:
    with session_scope() as session:
        return len(metrics_service.series(session, run_id).get("finetune/loss", []))


def log_sizes(log_dir: Path) -> dict[Path, int]:
    """Where each worker's log ends now: what comes after is this test's."""
    return {path: path.stat().st_size for path in log_dir.glob("*.log")}


def evaluate_outcomes(log_dir: Path, since: dict[Path, int]) -> list[str]:
    """What evaluate tasks answered in the stack's worker logs since `since` (the CPU lane
    runs them, whichever CPU-lane worker is up now: an earlier test of the package may have
    replaced the first; the training workers' logs are read too, to see none ran there)."""
    found = []
    for path in sorted(log_dir.glob("*.log")):
        with path.open("rb") as log:
            log.seek(since.get(path, 0))
            found += DONE.findall(log.read().decode(errors="replace"))
    return found


@pytest.mark.parametrize("stack", ["redis-postgres"], indirect=True)
def test_evaluate_now_on_a_cancelled_finetune_stores_an_evaluation_and_keeps_its_status(stack):
    log_dir = stack["workers"].log_dir
    since = log_sizes(log_dir)  # the stack lives for the package: its logs hold earlier tests'
    params = {"encoder": "scratch", "epochs": 500, "batch_size": 50}
    with session_scope() as session:
        run_in = RunCreate(kind="finetune", dataset="demo-tiny", params=params)
        run_id = launcher.launch(session=session, run_in=run_in)[0].id
    wait_for(lambda: epochs_logged(run_id) >= 1, timeout=90, what="its first epoch")
    with session_scope() as session:
        launcher.cancel(session=session, run_id=run_id)
    stopped = wait_for(
        lambda: (r := read(run_id)).status == "cancelled" and r, timeout=60, what="the cancel"
    )
    assert stopped.result["training"]["epochs_run"] >= 1 and not stopped.result.get("evaluation")

    with session_scope() as session:  # what POST /api/runs/{id}/evaluate does
        assert partial.request_evaluation(session=session, run_id=run_id)["queued"] is True
    with session_scope() as session:  # a second click while it is queued sends nothing
        assert partial.request_evaluation(session=session, run_id=run_id)["already_queued"]
    queue.enqueue("evaluate", run_id)  # the same message twice: the second must be harmless

    done = wait_for(
        lambda: (r := read(run_id)).result.get("evaluation") and r, timeout=60, what="evaluation"
    )
    assert done.status == "cancelled" and done.finished_at == stopped.finished_at
    assert done.attempts == stopped.attempts  # no attempt claimed, nothing re-run
    evaluation = done.result["evaluation"]
    assert evaluation["partial"] is True and 1 <= evaluation["model_epoch"] <= 500
    assert 0 <= evaluation["accuracy"] <= 1
    assert sum(map(sum, evaluation["confusion_matrix"])) == 50  # demo-tiny's test split
    assert done.result["training"] == stopped.result["training"]  # the rest kept as it was
    with session_scope() as session:
        names = [a.name for a in artifacts_service.list_run_artifacts(session, run_id)]
    assert {"evaluation.json", "predictions.npz", "confusion_matrix.png"} <= set(names)
    assert len(names) == len(set(names))

    outcomes = wait_for(
        lambda: len(found := evaluate_outcomes(log_dir, since)) >= 2 and found,
        timeout=30,
        what="both messages handled",
    )
    assert outcomes.count("evaluated") == 1, outcomes  # one stored, the other saw it there
    with session_scope() as session:  # both ended: no evaluation is marked queued any more
        assert session.get(Run, run_id).evaluation_queued_at is None
    assert read(run_id).result["evaluation"]["evaluated_at"] == evaluation["evaluated_at"]
