"""Runs through a real Celery worker, broker and database: the whole lifecycle."""

from __future__ import annotations

import hashlib
import os
import signal

import pytest

from store.db import session_scope
from store.errors import InvalidRequest
from store.runs import ablations as ablation_launcher
from store.runs import launch as launcher
from store.runs import metrics as metrics_service
from store.runs.models import Run
from store.runs.schemas import AugmentationStudyCreate, RunCreate, RunRead
from tests.stack import wait_for

pytestmark = pytest.mark.slow
TINY_STAGE = {"epochs": 1, "batch_size": 50}
LONG_STAGE = {"epochs": 500, "batch_size": 20}


def launch(**fields) -> list[RunRead]:
    with session_scope() as session:
        runs = launcher.launch(session=session, run_in=RunCreate(**fields))
        return [RunRead.model_validate(r) for r in runs]


def read(run_id: int) -> RunRead:
    with session_scope() as session:
        return RunRead.model_validate(session.get(Run, run_id))


def finished(run_id: int, timeout: float = 240) -> RunRead:
    return wait_for(
        lambda: (r := read(run_id)).status in ("succeeded", "failed", "cancelled") and r,
        timeout=timeout,
        what=f"run {run_id} to finish",
    )


def run_count() -> int:
    with session_scope() as session:
        return session.query(Run).count()


def test_pretrain_then_finetune_through_the_queue(stack, tmp_path):
    pre = launch(
        kind="pretrain",
        dataset="demo-tiny",
        params={"ae01": TINY_STAGE, "ae02": TINY_STAGE, "ae03": TINY_STAGE},
    )[0]
    # Queued at once, before its parent finished: the task waits for the pretrain run.
    fine = launch(
        kind="finetune",
        dataset="demo-tiny",
        parent_run_id=pre.id,
        params={"encoder": "stacked", "epochs": 2, "batch_size": 50},
    )[0]
    pre, fine = finished(pre.id), finished(fine.id)
    assert pre.status == "succeeded", pre.error
    assert fine.status == "succeeded", (fine.error, fine.traceback)
    assert pre.result["trained_stages"] == ["ae01", "ae02", "ae03"]
    assert fine.result["evaluation"]["accuracy"] >= 0
    assert fine.device and fine.worker_host and fine.versions["keras"]
    assert fine.progress["epoch"] == 2 and fine.progress["images_per_sec"] > 0

    with session_scope() as session:
        series = metrics_service.series(session, fine.id)
        summary = metrics_service.summaries(session, fine.id)
        pre_series = metrics_service.series(session, pre.id)
        from store.artifacts import service as artifacts_service

        artifact = artifacts_service.run_artifact(session, fine.id, "classifier.weights.h5")
        data = b"".join(artifacts_service.iter_chunks(session, artifact.id))
        names = {a.name for a in artifacts_service.list_run_artifacts(session, pre.id)}
    assert [step for step, _ in series["finetune/val_loss"]] == [1, 2]
    assert summary["finetune/val_loss"]["goal"] == "min"
    assert summary["finetune/val_accuracy"]["goal"] == "max"
    assert {"ae01/loss", "ae02/val_loss", "ae03/loss"} <= set(pre_series)
    assert {"ae01.weights.h5", "stacked_ae.keras", "reconstructions.npz"} <= names
    assert hashlib.sha256(data).hexdigest() == artifact.sha256 and len(data) == artifact.size

    from worker.ml.models import build_stacked_classifier

    path = tmp_path / "classifier.weights.h5"
    path.write_bytes(data)
    build_stacked_classifier(3).load_weights(path)  # loadable by Keras


def test_invalid_params_are_refused_and_nothing_is_queued(stack):
    before = run_count()
    cases = [
        (
            {"kind": "pretrain", "dataset": "demo-tiny", "params": {"ae01": {"kernel_size": 4}}},
            "params.ae01.kernel_size",
        ),
        (
            {
                "kind": "pretrain",
                "dataset": "demo-tiny",
                "params": {"ae02": {"optimizer": "adagrad"}},
            },
            "params.ae02.optimizer",
        ),
        ({"kind": "finetune", "dataset": "demo-tiny", "params": {"epochs": 0}}, "params.epochs"),
        ({"kind": "pretrain", "dataset": "no-such-data"}, "dataset"),
        (
            {"kind": "finetune", "dataset": "demo-tiny", "params": {"encoder": "stacked"}},
            "parent_run_id",
        ),
        (
            {
                "kind": "finetune",
                "dataset": "demo-tiny",
                "params": {"encoder": "single"},
                "parent_run_id": 99999,
            },
            "parent_run_id",
        ),
        ({"kind": "pretrain", "dataset": "demo-tiny", "parallel": 2}, "parallel"),
    ]
    for fields, field in cases:
        with pytest.raises(InvalidRequest) as err:
            launch(**fields)
        assert err.value.field == field
    with pytest.raises(InvalidRequest), session_scope() as session:
        ablation_launcher.launch_augmentation_study(
            session=session,
            study_in=AugmentationStudyCreate(
                dataset="demo-tiny", params={"encoder": "single"}, seeds=[0, 1]
            ),
        )
    assert run_count() == before


def test_cancel_a_running_run_keeps_its_metrics_and_a_queued_one_never_starts(stack):
    long = {"ae01": LONG_STAGE, "ae02": LONG_STAGE, "ae03": LONG_STAGE, "bn_momentum": 0.9}
    running = [
        launch(kind="pretrain", dataset="demo-tiny", params=long, name=f"long {i}")[0]
        for i in range(2)
    ]  # both workers busy
    queued = launch(kind="pretrain", dataset="demo-tiny", params=long, name="waiting")[0]
    for run in running:
        wait_for(
            lambda r=run: read(r.id).progress.get("epoch", 0) >= 2,
            timeout=120,
            what=f"run {run.id} to train two epochs",
        )
    with session_scope() as session:
        assert launcher.cancel(session=session, run_id=queued.id).status == "cancelled"
        for run in running:
            assert launcher.cancel(session=session, run_id=run.id).status == "running"
    for run in running:
        done = finished(run.id, timeout=60)
        assert done.status == "cancelled"
        with session_scope() as session:
            assert len(metrics_service.series(session, run.id)["ae01/loss"]) >= 2
            from store.artifacts import service as artifacts_service

            assert artifacts_service.run_artifact(session, run.id, "ae01.weights.h5").size > 0
    after = read(queued.id)
    assert after.status == "cancelled" and after.started_at is None


def test_a_killed_worker_leaves_no_run_running(stack):
    # One attempt only: the run is failed instead of retried (test_faults covers retries).
    long = {
        "ae01": LONG_STAGE,
        "ae02": LONG_STAGE,
        "ae03": LONG_STAGE,
        "runtime": {"max_attempts": 1},
    }
    run = launch(kind="pretrain", dataset="demo-tiny", params=long)[0]
    started = wait_for(
        lambda: (r := read(run.id)).progress.get("epoch", 0) >= 1 and r,
        timeout=120,
        what="the run to start",
    )
    child_pid = int(started.worker_host.rsplit(":", 1)[1])
    os.kill(child_pid, signal.SIGKILL)  # as the OOM killer would
    failed = wait_for(
        lambda: (r := read(run.id)).status == "failed" and r,
        timeout=60,
        what="the dead worker's run to be marked failed",
    )
    assert "stopped responding" in failed.error
    with session_scope() as session:
        again = launcher.requeue(session=session, run_id=run.id)
        assert again.status == "queued"
        launcher.cancel(session=session, run_id=run.id)


def workers_online() -> int:
    from store.workers import service as workers_service

    with session_scope() as session:
        return len(workers_service.online(session, within_seconds=2))


def test_a_tune_run_shares_one_study_between_two_workers(stack):
    # A worker whose child was killed above needs a few seconds to start a new one.
    wait_for(lambda: workers_online() >= 2, timeout=90, what="two idle workers")
    runs = launch(
        kind="tune",
        dataset="demo-tiny",
        parallel=2,
        params={
            "n_trials": 2,
            "pruning": False,
            "epochs": 1,
            "batch_size": 50,
            "kernel_sizes": [3, 5],
            "optimizers": ["adam", "sgd"],
        },
    )
    done = [finished(r.id) for r in runs]
    assert [r.status for r in done] == ["succeeded", "succeeded"], [r.error for r in done]
    assert done[0].study_name == done[1].study_name and done[0].group_id == done[1].group_id
    # Which worker takes which part is the broker's and the machine's load's: on a busy
    # machine one worker may finish its part and take the other before the second worker
    # wakes (seen on Redis too), so the parts' hosts are not asserted; each part records its
    # own trials in the one study, below.
    with session_scope() as session:
        trials = metrics_service.trials_of(session, [r.id for r in done])
    assert len(trials) == 4 and {t.run_id for t in trials} == {r.id for r in done}
    # Two processes may draw the same grid point at the same moment (Optuna says so).
    assert {(t.params["kernel_size"], t.params["optimizer"]) for t in trials} <= {
        (3, "adam"),
        (3, "sgd"),
        (5, "adam"),
        (5, "sgd"),
    }
    assert [t.state for t in trials] == ["complete"] * 4, [(t.state, t.value) for t in trials]
