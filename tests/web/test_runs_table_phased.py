"""A built-in column that may be null (finished, launched by, parent, group, the test
accuracy and balanced accuracy of the run's stored evaluation) pages as a
parameter does: its runs with a value by its (column, id) index, then the runs without
one by id; by cursor exactly as by offset (the one order), every run once, in both
directions, with ties and with the page boundary inside each phase."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from store.db import session_scope
from store.runs.models import Run
from tests.web.factories import make_run
from tests.web.paging import by_cursor_and_offset


@pytest.fixture(scope="module")
def runs(client):
    """Seven runs of this module's tag: some finished (one tie), some queued; some launched
    by a token name; some with a parent."""
    tag = f"phased-{uuid.uuid4().hex[:6]}"
    at = datetime(2026, 12, 1, tzinfo=UTC)
    ids: list[int] = []
    for i in range(7):
        status = "queued" if i % 3 == 2 else "succeeded"
        finished = at + timedelta(minutes=min(i, 4)) if status == "succeeded" else None
        accuracy = [0.5, 0.7, None, 0.7, 0.9, None, 0.6][i]  # a tie; none while queued
        ids.append(
            make_run(
                status=status,
                name=f"phased {i}",
                tags=[tag],
                finished_at=finished,
                parent_run_id=ids[0] if i in (2, 5) else None,
                result=None
                if accuracy is None
                else {"evaluation": {"accuracy": accuracy, "balanced_accuracy": 1 - accuracy}},
            )
        )
    with session_scope() as session:
        for i, run_id in enumerate(ids):
            who = ["ann", "bob", None][i % 3]
            session.execute(update(Run).where(Run.id == run_id).values(launched_by=who))
    return tag, ids


def _pages(client, tag: str, sort: str, order: str, limit: int) -> tuple[list, list]:
    base = {"filter": f"tag = {tag}", "sort": sort, "order": order, "limit": limit}
    by_cursor, by_offset = by_cursor_and_offset(client, base, runs=10, pages=20)
    everything = client.get("/api/runs/table", params={**base, "limit": 50}).json()["items"]
    assert by_offset == [item["id"] for item in everything]
    return by_cursor, by_offset


@pytest.mark.parametrize(
    "sort", ["finished", "launched_by", "parent", "test_accuracy", "balanced_accuracy"]
)
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_a_nullable_column_pages_by_cursor_as_by_offset(client, runs, sort, order, limit):
    tag, ids = runs
    by_cursor, by_offset = _pages(client, tag, sort, order, limit)
    assert sorted(by_cursor) == sorted(ids)
    assert by_cursor == by_offset


def test_runs_without_a_value_come_last_by_id(client, runs):
    tag, ids = runs
    items = client.get(
        "/api/runs/table", params={"filter": f"tag = {tag}", "sort": "finished", "order": "asc"}
    ).json()["items"]
    queued = [ids[2], ids[5]]
    assert [item["id"] for item in items][-2:] == sorted(queued)
