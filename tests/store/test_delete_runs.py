"""Deleting runs: every row a run owns goes, references to it are cleared, nothing else is
touched, refusals name their reason, and a failure part-way leaves everything as it was.
On SQLite and PostgreSQL (the `store` fixture)."""

from __future__ import annotations

import pytest

import store.models  # noqa: F401  (every table in the metadata)
from store.artifacts import service as artifacts_service
from store.artifacts.models import CHUNK_BYTES
from store.db import session_scope
from store.runs import attempts, checkpoints
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.models import Run, RunGroup
from store.workers import service as workers_service
from tests.web.factories import owned_rows, table_sizes


def make(dataset_id: int, kind: str = "pretrain", status: str = "succeeded", **fields) -> int:
    """A run with two epochs of metrics, a two-chunk file, a checkpoint and one attempt."""
    with session_scope() as session:
        run_id = runs_service.create_run(
            session=session,
            kind=kind,
            name=f"del-{kind}",
            params={},
            dataset_id=dataset_id,
            **fields,
        ).id
        if status == "queued":
            return run_id
        attempts.claim(session=session, run_id=run_id, worker_host="h", device="CPU", versions={})
        for step in (1, 2):
            metrics_service.log_epoch(
                session=session,
                run_id=run_id,
                stage="ae01",
                step=step,
                values={"val_loss": 1 / step},
            )
        data = b"x" * (CHUNK_BYTES + 10)
        artifacts_service.store_bytes(
            session=session, data=data, name="ae01.weights.h5", kind="weights", run_id=run_id
        )
        checkpoints.save(
            session=session, run_id=run_id, attempt=1, data=b"ckpt", stage="ae01", epoch=2
        )
        if kind == "tune":
            trial = {"number": 0, "params": {}, "state": "COMPLETE", "value": 0.5}
            metrics_service.record_trial(
                session=session, run_id=run_id, trial={**trial, "intermediate": {}, "seconds": 1.0}
            )
        if status != "running":
            attempts.finish(session=session, run_id=run_id, attempt=1, status=status)
    return run_id


def delete(run_ids: list[int]) -> dict[int, str | None]:
    with session_scope() as session:
        return runs_service.delete_runs(session=session, run_ids=run_ids)


def test_deleting_a_run_removes_every_row_it_owns_and_nothing_else(store):
    pretrain = make(store)
    child = make(store, kind="finetune", parent_run_id=pretrain)
    tune = make(store, kind="tune", status="failed")
    keeper = make(store)
    pointing = make(store, source_run_id=tune)  # launched from the tune's settings
    with session_scope() as session:
        workers_service.report(
            session=session, name="w@del", host="h", device="CPU", current_run_id=tune
        )
    doomed = [pretrain, child, tune]
    owned = owned_rows(doomed)
    assert owned["metrics.run_id"] == 6 and owned["artifact_chunks"] == 3 * 3
    assert owned["tune_trials.run_id"] == 1 and owned["run_attempts.run_id"] == 3
    assert owned["workers.current_run_id"] == 1 and owned["runs.source_run_id"] == 1
    keeper_rows = owned_rows([keeper])
    before = table_sizes()

    assert delete(doomed) == {pretrain: None, child: None, tune: None}

    assert set(owned_rows(doomed).values()) == {0}
    assert owned_rows([keeper]) == keeper_rows
    after = table_sizes()
    gone = {"runs": 3, "metrics": 6, "metric_summaries": 3, "run_attempts": 3}
    gone |= {"artifacts": 6, "artifact_chunks": 9, "tune_trials": 1}
    assert {t: before[t] - after[t] for t in before if before[t] != after[t]} == gone
    with session_scope() as session:
        assert session.get(Run, pointing).source_run_id is None  # cleared, the run kept
        worker = workers_service.online(session, within_seconds=3600)
        assert [w.current_run_id for w in worker if w.name == "w@del"] == [None]


def test_live_missing_and_needed_runs_are_refused_with_the_reason(store):
    queued = make(store, status="queued")
    running = make(store, status="running")
    pretrain = make(store)
    used_by = make(store, kind="finetune", status="running", parent_run_id=pretrain)
    grand = make(store)
    middle = make(store, kind="finetune", parent_run_id=grand)  # not really a pretrain: a chain
    below = make(store, kind="finetune", status="running", parent_run_id=middle)
    before = table_sizes()

    outcome = delete([queued, running, pretrain, 10**9, grand, middle])

    assert "queued" in outcome[queued] and "cancel it" in outcome[queued]
    assert "running" in outcome[running]
    assert f"#{used_by}" in outcome[pretrain] and "same request" in outcome[pretrain]
    assert "does not exist" in outcome[10**9]
    assert f"#{below}" in outcome[middle] and f"#{middle}" in outcome[grand]  # kept up the chain
    assert table_sizes() == before


def test_a_pretrain_goes_when_its_users_go_in_the_same_request(store):
    pretrain = make(store)
    users = [make(store, kind="finetune", parent_run_id=pretrain) for _ in range(2)]
    first = delete([pretrain, users[0]])
    assert first[users[0]] is None and f"used by run #{users[1]}" in first[pretrain]
    assert delete([pretrain, users[1]]) == {pretrain: None, users[1]: None}
    assert owned_rows([pretrain, *users])["runs.id"] == 0


def test_a_group_left_without_runs_goes_and_one_left_with_runs_forgets_the_pretrain(store):
    with session_scope() as session:
        emptied = RunGroup(kind="ablation_study", name="g1", params={})
        kept = RunGroup(kind="ablation_study", name="g2", params={})
        session.add_all([emptied, kept])
        session.flush()
        emptied_id, kept_id = emptied.id, kept.id
    pretrain = make(store)
    with session_scope() as session:
        session.get(RunGroup, kept_id).params = {"parent_run_id": pretrain, "factor": "pretraining"}
    lone = make(store, kind="finetune", group_id=emptied_id)
    from_pretrain = make(store, kind="finetune", group_id=kept_id, parent_run_id=pretrain)
    scratch = make(store, kind="finetune", group_id=kept_id)

    assert delete([lone, pretrain, from_pretrain]) == {
        lone: None,
        pretrain: None,
        from_pretrain: None,
    }

    with session_scope() as session:
        assert session.get(RunGroup, emptied_id) is None
        params = session.get(RunGroup, kept_id).params
        assert params == {"parent_run_id": None, "factor": "pretraining"}
        assert session.get(Run, scratch).group_id == kept_id


def test_a_failure_before_the_commit_leaves_every_row_in_place(store):
    """delete_runs works in the caller's transaction: nothing is gone until it commits."""
    run_id = make(store)
    before = owned_rows([run_id])
    with pytest.raises(RuntimeError), session_scope() as session:
        assert runs_service.delete_runs(session=session, run_ids=[run_id]) == {run_id: None}
        raise RuntimeError("the database went away before the commit")
    assert owned_rows([run_id]) == before


def optuna_study(name: str, trials: int = 2) -> None:
    """An Optuna study in the store's database, as a tune's workers leave it."""
    import optuna

    from store.settings import get_settings

    storage = optuna.storages.RDBStorage(get_settings().sqlalchemy_url)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.set_user_attr("run", name)
    for number in range(trials):
        trial = study.ask()
        trial.suggest_int("kernel", 3, 5)
        trial.report(1.0 / (number + 1), step=1)
        study.tell(trial, 0.5)
    storage.engine.dispose()


def optuna_rows(name: str) -> int:
    """Rows of every Optuna table that belong to the study `name`."""
    from sqlalchemy import text

    with session_scope() as session:
        study = "SELECT study_id FROM studies WHERE study_name = :n"
        trials = f"SELECT trial_id FROM trials WHERE study_id IN ({study})"
        queries = ["SELECT count(*) FROM studies WHERE study_name = :n"]
        queries += [f"SELECT count(*) FROM {t} WHERE study_id IN ({study})" for t in (
            "study_directions", "study_user_attributes", "trials")]  # fmt: skip
        queries += [f"SELECT count(*) FROM {t} WHERE trial_id IN ({trials})" for t in (
            "trial_params", "trial_values", "trial_intermediate_values")]  # fmt: skip
        return sum(session.execute(text(q), {"n": name}).scalar_one() for q in queries)


def test_deleting_a_tune_deletes_its_optuna_study_once_no_run_shares_it(store):
    shared, other = f"study-{store}-shared", f"study-{store}-other"
    for name in (shared, other):
        optuna_study(name)
    first, second = (make(store, "tune", study_name=shared) for _ in range(2))
    kept = make(store, "tune", study_name=other)
    before = optuna_rows(other)
    assert optuna_rows(shared) >= 10 and before >= 10

    assert delete([first]) == {first: None}
    assert optuna_rows(shared) >= 10  # the parallel tune's other run still reads it
    assert delete([second]) == {second: None}
    assert optuna_rows(shared) == 0
    assert optuna_rows(other) == before  # another tune's study is untouched
    assert delete([kept]) == {kept: None} and optuna_rows(other) == 0


def test_a_tune_whose_study_was_never_stored_is_deleted_all_the_same(store):
    tune = make(store, "tune", study_name="never-stored")
    assert delete([tune]) == {tune: None}
