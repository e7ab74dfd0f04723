"""On SQLite, with statistics (as ANALYZE or PRAGMA optimize leave them), the pages people
open most, newest first and by best, read an index in that order, never a sort of every run.
(An index on (dataset_id, id), added on SQLite with statistics gathered before it, once made
every page join runs from their data set and sort them all: 10 -> 40 ms at 10,000 runs;
it is PostgreSQL's alone, migration 0017.) Other built-in columns sort the runs the filter
keeps on SQLite (PostgreSQL walks an index for each: test_runs_page_plans.py);
bench/web_latency.py times them."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from store.db import get_engine, session_scope
from store.runs.models import Run
from store.runs.schemas import RunFilter
from tests.store.test_runs_page_plans import _captured

pytestmark = pytest.mark.parametrize("store", ["sqlite"], indirect=True)

SORTS = ("created", "best")


def _plans(sort: str, order: str) -> list[str]:
    """The query plans of the statements a page of the table reads runs with."""
    from backend.runs import views

    with _captured() as sent, session_scope() as session:
        views.table(session, run_filter=RunFilter(), sort=sort, order=order, limit=20)
    plans = []
    with get_engine().connect() as conn:
        for statement, parameters in sent:
            if "FROM runs" in statement and "ORDER BY" in statement:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)  # type: ignore[arg-type]
                plans.append(" | ".join(row[3] for row in rows))
    return plans


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("sort", SORTS)
def test_a_page_in_each_builtin_order_sorts_no_run(store, sort, order):
    with session_scope() as session:
        session.execute(
            insert(Run),
            [
                {
                    "kind": "finetune",
                    "name": f"p{i}",
                    "status": "succeeded",
                    "params": {"i": i},
                    "tags": [f"t{i % 3}"],
                    "seed": 0,
                    "dataset_id": store,
                    "result": {},
                }
                for i in range(200)
            ],  # fmt: skip
        )
    with get_engine().begin() as conn:  # statistics, as an ANALYZE or PRAGMA optimize leaves
        conn.exec_driver_sql("ANALYZE")
    plans = _plans(sort, order)
    assert plans
    for plan in plans:
        assert "TEMP B-TREE" not in plan, plan
