"""A run's kept best (runs.best_key, runs.best_score: store/runs/best.py) is what its
summaries say after every way they change: an epoch (the kept one or not), a pretrain
reaching a later stage, a tune's trials, a resumed attempt (summaries rebuilt), a fresh
re-queue (summaries dropped at the claim), "evaluate now" (the result changes, the best
does not); and migration 0016 fills it for runs stored before it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sqlalchemy import select, text, update

from jobspec import kinds
from store.db import get_engine, session_scope
from store.runs import attempts, best, changes, checkpoints, evaluations
from store.runs import metrics as metrics_service
from store.runs import service as runs_service
from store.runs.models import Run


def new_run(dataset_id: int, kind: str = "finetune") -> int:
    with session_scope() as session:
        params = kinds.get(kind).params().model_dump(mode="json")
        run = runs_service.create_run(
            session=session, kind=kind, name="kept", params=params, dataset_id=dataset_id
        )
        return run.id


def claim(run_id: int):
    with session_scope() as session:
        return attempts.claim(
            session=session, run_id=run_id, worker_host="h:1", device="CPU", versions={}
        )


def log(run_id: int, attempt: int, stage: str, step: int, **values: float) -> None:
    with session_scope() as session:
        attempts.fence(session, run_id, attempt)
        metrics_service.log_epoch(
            session=session, run_id=run_id, stage=stage, step=step, values=values
        )


def kept(run_id: int) -> tuple[str | None, float | None]:
    with session_scope() as session:
        run = session.get(Run, run_id)
        return run.best_key, run.best_score


def from_summaries(run_id: int) -> tuple[str | None, float | None]:
    """The best by the rule, from the summaries as they are now."""
    with session_scope() as session:
        kind = session.get(Run, run_id).kind
        found = metrics_service.summaries(session, run_id)
    values = {k: (s["kept_value"], s["last_value"], s["best_value"]) for k, s in found.items()}
    return best.score_of(kind, values)


def test_each_epoch_keeps_the_score_of_the_epoch_the_run_keeps(store):
    run_id = new_run(store)
    claim(run_id)
    assert kept(run_id) == (None, None)
    log(run_id, 1, "finetune", 1, val_loss=0.9)
    assert kept(run_id) == ("finetune/val_loss", 0.9)  # a loss until an accuracy comes
    for step, (acc, loss) in enumerate([(0.5, 0.8), (0.7, 0.6), (0.6, 0.7)], start=2):
        log(run_id, 1, "finetune", step, val_accuracy=acc, val_loss=loss)
        assert kept(run_id) == from_summaries(run_id)
    key, score = kept(run_id)
    assert key == "finetune/val_accuracy" and score is not None and score < 0  # negated


def test_a_pretrain_is_scored_on_its_latest_stage_and_a_tune_on_its_best_trial(store):
    pretrain = new_run(store, "pretrain")
    claim(pretrain)
    log(pretrain, 1, "ae01", 1, val_loss=0.5)
    assert kept(pretrain) == ("ae01/val_loss", 0.5)
    log(pretrain, 1, "ae03", 1, val_loss=0.8)
    assert kept(pretrain) == ("ae03/val_loss", 0.8)
    tune = new_run(store, "tune")
    claim(tune)
    log(tune, 1, "trial-0", 1, val_loss=0.4)
    log(tune, 1, "trial-1", 1, val_loss=0.3)
    log(tune, 1, "trial-1", 2, val_loss=0.35)
    assert kept(tune) == ("trial-*/val_loss", 0.3)  # the best of any trial's epochs


def test_a_resumed_attempt_keeps_the_best_of_what_its_checkpoint_covers(store):
    run_id = new_run(store)
    claim(run_id)
    log(run_id, 1, "finetune", 1, val_accuracy=0.5)
    log(run_id, 1, "finetune", 2, val_accuracy=0.6)
    with session_scope() as session:
        attempts.fence(session, run_id, 1)
        checkpoints.save(
            session=session, run_id=run_id, attempt=1, data=b"c", stage="finetune", epoch=2
        )
    log(run_id, 1, "finetune", 3, val_accuracy=0.9)  # past the checkpoint: dropped at resume
    with session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status="failed", error="x")
        runs_service.requeue(session=session, run_id=run_id)
    assert kept(run_id) == from_summaries(run_id) == ("finetune/val_accuracy", -0.9)
    assert claim(run_id).resume_from == {"stage": "finetune", "epoch": 2}
    assert kept(run_id) == from_summaries(run_id) == ("finetune/val_accuracy", -0.6)


def test_a_fresh_requeue_clears_the_best_once_a_worker_claims_it(store):
    run_id = new_run(store)
    claim(run_id)
    log(run_id, 1, "finetune", 1, val_accuracy=0.5)
    with session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status="cancelled")
        runs_service.requeue(session=session, run_id=run_id, fresh=True)
    assert kept(run_id) == ("finetune/val_accuracy", -0.5)  # its metrics stay until claimed
    claim(run_id)
    assert kept(run_id) == (None, None)
    log(run_id, 2, "finetune", 1, val_accuracy=0.4)
    assert kept(run_id) == ("finetune/val_accuracy", -0.4)


def test_evaluate_now_leaves_the_best_as_it_is(store):
    run_id = new_run(store)
    claim(run_id)
    log(run_id, 1, "finetune", 1, val_accuracy=0.5)
    with session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status="cancelled")
    with session_scope() as session:
        stored = evaluations.store_evaluation(
            session=session, run_id=run_id, evaluation={"accuracy": 0.99}, files=[]
        )
    assert stored
    assert kept(run_id) == ("finetune/val_accuracy", -0.5)


def _migration_0016():
    """Revision 0016 as a module (migrations are files, not a package)."""
    path = Path(__file__).parents[2] / "store/migrations/versions/0016_kept_best.py"
    spec = importlib.util.spec_from_file_location("migration_0016", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    return migration


def test_migration_0016_fills_the_best_of_runs_stored_before_it(store):
    ids = [new_run(store), new_run(store, "pretrain"), new_run(store)]
    for run_id in ids[:2]:
        claim(run_id)
    log(ids[0], 1, "finetune", 1, val_accuracy=0.5)
    log(ids[1], 1, "ae02", 1, val_loss=0.25)
    expected = [kept(run_id) for run_id in ids]
    assert expected == [("finetune/val_accuracy", -0.5), ("ae02/val_loss", 0.25), (None, None)]
    with session_scope() as session:
        session.execute(update(Run).values(best_key=None, best_score=None))
    migration = _migration_0016()
    with session_scope() as session:
        migration._fill(session.connection())
    assert [kept(run_id) for run_id in ids] == expected


def test_migration_0016s_frozen_ranking_is_the_stores_ranking_of_its_day():
    """The migration fills old runs by a copy of the kinds' ranking frozen as literals (a
    migration imports nothing of the project). While the registry ranks as it did then, the
    copy and the store must agree; when a kind's ranking changes, this fails to say that
    runs stored before need a data migration (or `best.refresh`) of their own."""
    migration = _migration_0016()
    today = tuple((kind, rank.key, rank.pattern, rank.metric.goal) for kind, rank in best.groups())
    assert today == migration.RANKING
    values = {
        "finetune/val_loss": (None, 0.7, 0.6),
        "ae02/val_loss": (0.3, 0.35, 0.25),
        "trial-0001/val_loss": (None, 0.9, 0.4),
        "trial-0002/val_loss": (None, 0.8, 0.2),
    }
    for kind in ("finetune", "pretrain", "tune", "gone"):
        assert migration._score_of(kind, values) == best.score_of(kind, values)


def test_a_stored_result_the_database_cannot_parse_sorts_as_no_number(store):
    """An older version's result with a lone surrogate escape (PostgreSQL's `->` refuses the
    whole document) or, on SQLite, text that is not JSON at all: the row can still be
    written (its evaluation index takes it), and a sort by test accuracy reads it as no
    number beside the runs that have one; on PostgreSQL the table's page lists both."""
    from backend.runs import views
    from store.runs.schemas import RunFilter

    good, bad = new_run(store), new_run(store)
    dialect = get_engine().dialect.name
    stored = (
        "CAST(X'7B2261' AS TEXT)"  # '{"a': not JSON
        if dialect == "sqlite"
        else """'{"evaluation": {"accuracy": 0.9}, "per_class": {"\\udfff": 1}}'"""
    )
    with get_engine().begin() as conn:
        conn.execute(text(f"UPDATE runs SET result = {stored} WHERE id = :id"), {"id": bad})
        conn.execute(
            text("""UPDATE runs SET result = '{"evaluation": {"accuracy": 0.5}}' WHERE id = :id"""),
            {"id": good},
        )
        conn.execute(text("UPDATE runs SET name = 'still writable' WHERE id = :id"), {"id": bad})
    expr = changes.evaluation_number("accuracy", dialect)
    with session_scope() as session:
        numbers = dict(session.execute(select(Run.id, expr).where(Run.id.in_([good, bad]))).all())
        assert numbers == {good: 0.5, bad: None}
    if dialect == "sqlite":  # the sort's expression is the index's (PostgreSQL's: plan tests)
        with session_scope() as session:
            statement = select(Run.id).order_by(expr.desc(), Run.id).limit(5)
            compiled = statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
            plan = session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
            assert "ix_runs_eval_accuracy_sqlite" in str(plan), plan
    if dialect == "postgresql":
        with session_scope() as session:
            for order in ("desc", "asc"):
                page = views.table(
                    session, run_filter=RunFilter(), sort="test_accuracy", order=order, limit=500
                )
                assert {item["id"] for item in page["items"]} >= {good, bad}
