"""The runs table sorted by duration pages by merging two walks (finished runs on their
seconds' index, runs started and not finished by their start), then the runs never
started by id: by cursor exactly as by offset (the one order, views' expression), every
run once, in both directions, with ties and page boundaries inside each walk."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.web.factories import make_run
from tests.web.paging import by_cursor_and_offset


@pytest.fixture(scope="module")
def runs(client):  # noqa: ARG001 (the app's database)
    """Finished runs of 1 h, 2 h (two: a tie) and 5 days; running runs started 3 h and 10
    days ago (their durations grow while the test runs, far from any other); queued runs
    and a run cancelled before it started (no duration)."""
    tag = f"dur-{uuid.uuid4().hex[:6]}"
    start = datetime(2026, 11, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    ids = []
    for hours in (1, 2, 2, 120):
        ids.append(
            make_run(
                tags=[tag],
                started_at=start,
                finished_at=start + timedelta(hours=hours),
            )
        )
    for hours in (3, 240):
        ids.append(
            make_run("finetune", "running", tags=[tag], started_at=now - timedelta(hours=hours))
        )
    ids.append(make_run("finetune", "queued", tags=[tag]))
    ids.append(make_run("finetune", "queued", tags=[tag]))
    ids.append(make_run("finetune", "cancelled", tags=[tag], finished_at=start))
    return tag, ids


def _pages(client, tag: str, order: str, limit: int) -> tuple[list[int], list[int]]:
    base = {"filter": f"tag = {tag}", "sort": "duration", "order": order, "limit": limit}
    return by_cursor_and_offset(client, base, runs=12)


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_sorted_by_duration_pages_by_cursor_as_by_offset(client, runs, order, limit):
    tag, ids = runs
    by_cursor, by_offset = _pages(client, tag, order, limit)
    assert sorted(by_cursor) == sorted(ids)
    assert by_cursor == by_offset


def test_longest_first_mixes_finished_and_running_runs(client, runs):
    tag, ids = runs
    by_cursor, _ = _pages(client, tag, "desc", 2)
    # 10 days running, 5 days, 3 h running, 2 h (tie: newest first), 1 h; then by id
    assert by_cursor == [ids[5], ids[3], ids[4], ids[2], ids[1], ids[0], ids[8], ids[7], ids[6]]
