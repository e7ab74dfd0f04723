"""A page of the runs table reads an index, never every run, on PostgreSQL: the queries the
table really sends (captured as it runs) are explained with sequential scans and sorts
priced out, so the plan shows whether an index can serve them at all (an expression that
differs from the index's by a cast is a scan however large the store). What a page costs
is measured by bench/web_latency.py, never here."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from store.db import get_engine, session_scope
from store.runs.models import Run
from store.runs.schemas import RunFilter

pytestmark = pytest.mark.parametrize("store", ["postgres"], indirect=True)


@contextmanager
def _captured() -> Iterator[list[tuple[str, object]]]:
    """The statements (and parameters) sent meanwhile."""
    sent: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        sent.append((statement, parameters))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def _plan(statement: str, parameters: object) -> str:
    """EXPLAIN of one statement, sequential scans and explicit sorts priced out."""
    with session_scope() as session:
        conn = session.connection()
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_sort = off")
        conn.exec_driver_sql("SET LOCAL enable_incremental_sort = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()  # type: ignore[arg-type]
        return "\n".join(row[0] for row in rows)


def _runs(dataset_id: int, n: int = 60) -> None:
    with session_scope() as session:
        session.execute(
            insert(Run),
            [
                {
                    "kind": "finetune",
                    "name": f"planned {i}",
                    "status": "succeeded",
                    "params": {},
                    "seed": 0,
                    "dataset_id": dataset_id,
                    "tags": [f"plan:{i % 3}"],
                    "notes": "zoomed" if i % 7 == 0 else None,
                    "priority": i % 4,
                }
                for i in range(n)
            ],
        )


def _page_plan(asked: Callable[[Session], object], touches: str) -> str:
    """The plan of the statement of `asked` that reads `touches` (a regex) from runs."""
    with _captured() as sent, session_scope() as session:
        asked(session)
    found = [(s, p) for s, p in sent if re.search(touches, s) and "FROM runs" in s]
    assert found, touches
    return _plan(*found[0])


@pytest.mark.parametrize(
    ("sort", "index"),
    [
        ("name", "ix_runs_name_lower"),
        ("status", "ix_runs_status_id"),
        ("kind", "ix_runs_kind_id"),
        ("priority", "ix_runs_priority_id"),
        ("created", "ix_runs_(archived_)?created"),
        ("finished", "ix_runs_finished_id"),
        ("launched_by", "ix_runs_launched_by_id"),
        ("parent", "ix_runs_parent_run_id_id"),
        ("group", "ix_runs_group_id_id"),
        ("tags", "ix_runs_tags_sort"),
        ("params", "ix_runs_params_sort"),
        ("dataset", "ix_runs_dataset_id_id"),
    ],
)
def test_a_page_sorted_by_a_builtin_column_walks_its_index(store, sort, index):
    from backend.runs import views

    _runs(store)
    plan = _page_plan(
        lambda s: views.table(s, run_filter=RunFilter(), sort=sort, limit=20), "ORDER BY"
    )
    assert re.search(rf"Index Scan( Backward)? using {index} on runs", plan), plan


@pytest.mark.parametrize(
    ("clause", "index"),
    [
        ("tag = plan:1", "ix_runs_tags_trgm"),
        ('name ~ "planned 4"', "ix_runs_name_trgm"),
        ("notes ~ zoom", "ix_runs_notes_trgm"),
    ],
)
def test_text_clauses_read_a_trigram_index(store, clause, index):
    """The clause's own condition (store/runs/search.py), alone: on a store this small the
    planner may rather walk the page's order, but the trigram index must be able to serve
    the very expression the filter writes."""
    from store.runs import search

    _runs(store)
    query = select(Run.id).where(*search.where(search.parse(clause)))
    plan = _page_plan(lambda s: s.execute(query).all(), "LIKE")
    assert f"Bitmap Index Scan on {index}" in plan, plan


def test_the_poll_validator_reads_no_run(store):
    from backend.conditional import runs_state

    with _captured() as sent, session_scope() as session:
        runs_state(session)
    assert not any(re.search(r"\bFROM runs\b", statement) for statement, _ in sent)


@pytest.mark.parametrize(
    ("order", "index"), [("desc", "ix_runs_best_first"), ("asc", "ix_runs_best_last")]
)
def test_a_page_sorted_by_best_walks_a_group_on_its_index(store, order, index):
    """Each group of the sort by best (a kind's ranking key) is a walk of the kept best's
    index, best first or worst first (backend/runs/best_sort.py), never a sort of every
    run."""
    from backend.runs import views

    _runs(store)
    plan = _page_plan(
        lambda s: views.table(s, run_filter=RunFilter(), sort="best", order=order, limit=20),
        r"ORDER BY runs\.best_score",
    )
    assert re.search(rf"Index Scan( Backward)? using {index} on runs", plan), plan
    assert "Sort" not in plan, plan


def test_a_page_sorted_by_duration_walks_finished_runs_on_their_seconds_index(store):
    """The finished runs' walk of the sort by duration (backend/runs/duration_sort.py)
    reads the index over finish minus start, never a sort of every run."""
    from backend.runs import views

    _runs(store)
    plan = _page_plan(
        lambda s: views.table(s, run_filter=RunFilter(), sort="duration", limit=20),
        r"ORDER BY EXTRACT\(epoch FROM runs\.finished_at - runs\.started_at\)",
    )
    assert re.search(r"Index Scan( Backward)? using ix_runs_duration_pg on runs", plan), plan
    assert "Sort" not in plan, plan


@pytest.mark.parametrize(
    ("sort", "index"),
    [
        ("test_accuracy", "ix_runs_eval_accuracy_pg"),
        ("balanced_accuracy", "ix_runs_eval_balanced_accuracy_pg"),
    ],
)
def test_a_page_sorted_by_a_test_metric_walks_its_expression_index(store, sort, index):
    """The runs' stored evaluation numbers are sorted on an index over the very expression
    the table writes (store/runs/changes.py `evaluation_number`)."""
    from backend.runs import views

    _runs(store)
    plan = _page_plan(
        lambda s: views.table(s, run_filter=RunFilter(), sort=sort, limit=20),
        "ORDER BY stacklab_evaluation_number",
    )
    assert re.search(rf"Index Scan( Backward)? using {index} on runs", plan), plan
    assert "Sort" not in plan, plan
