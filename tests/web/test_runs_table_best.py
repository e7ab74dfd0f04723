"""The runs table sorted by best pages from the best kept on each run, a group at a time:
by cursor exactly as by offset, every run once, in both directions, with ties and a page
boundary inside each group, and in the very order the summaries give (views._sorted, the
order computed from every run's summaries, as it was before the best was kept)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from backend.runs import views
from store.datasets.models import DatasetRecord
from store.db import session_scope
from store.runs import service as runs_service
from store.runs.models import Run
from store.runs.schemas import RunFilter
from tests.web.factories import make_run
from tests.web.paging import by_cursor_and_offset


@pytest.fixture(scope="module")
def runs(client):  # noqa: ARG001 (the app's database)
    """Finetunes scored on accuracy (one tie) and on loss only, pretrains on ae03 and ae01,
    tunes on their best trial, and runs with no score yet."""
    tag = f"best-{uuid.uuid4().hex[:6]}"
    specs: list[tuple[str, str, dict[str, list[float]]]] = [
        ("finetune", "succeeded", {"finetune/val_accuracy": [0.5, 0.7]}),
        ("finetune", "succeeded", {"finetune/val_accuracy": [0.7], "finetune/val_loss": [1]}),
        ("finetune", "succeeded", {"finetune/val_accuracy": [0.9]}),
        ("finetune", "succeeded", {"finetune/val_loss": [0.4, 0.3]}),
        ("finetune", "failed", {"finetune/val_loss": [0.6]}),
        ("pretrain", "succeeded", {"ae01/val_loss": [0.2], "ae03/val_loss": [0.5]}),
        ("pretrain", "failed", {"ae01/val_loss": [0.1]}),
        ("tune", "succeeded", {"trial-0/val_loss": [0.5], "trial-1/val_loss": [0.3, 0.4]}),
        ("tune", "succeeded", {"trial-0/val_loss": [0.3]}),
        ("finetune", "queued", {}),
        ("pretrain", "running", {}),
    ]
    ids = [
        make_run(kind, status, tags=[tag], metrics=metrics or None)
        for kind, status, metrics in specs
    ]
    return tag, ids


def _pages(client, tag: str, order: str, limit: int) -> tuple[list[int], list[int]]:
    base = {"filter": f"tag = {tag}", "sort": "best", "order": order, "limit": limit}
    return by_cursor_and_offset(client, base, runs=15)


def _from_summaries(tag: str, order: str) -> list[int]:
    with session_scope() as session:
        query = select(Run.id).join(DatasetRecord, DatasetRecord.id == Run.dataset_id)
        query = views._sorted(
            session, runs_service.filtered(query, RunFilter(tag=tag)), "best", order
        )
        return list(session.scalars(query))


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_sorted_by_best_pages_by_cursor_as_by_offset_in_the_summaries_order(
    client, runs, order, limit
):
    tag, ids = runs
    by_cursor, by_offset = _pages(client, tag, order, limit)
    assert sorted(by_cursor) == sorted(ids)
    assert by_cursor == by_offset == _from_summaries(tag, order)


def test_best_first_is_accuracies_then_losses_then_unscored(client, runs):
    tag, ids = runs
    by_cursor, _ = _pages(client, tag, "desc", 4)
    assert by_cursor[:3] == [ids[2], ids[1], ids[0]]  # 0.9, then the 0.7 tie newest first
    assert by_cursor[-2:] == [ids[10], ids[9]]  # no score yet: by id, newest first


def test_a_cursor_from_another_sort_or_a_forged_group_is_refused(client, runs):
    tag, _ = runs
    base = {"filter": f"tag = {tag}", "sort": "best", "limit": 2}
    cursor = client.get("/api/runs/table", params=base).json()["next_cursor"]
    other = client.get("/api/runs/table", params={**base, "sort": "name", "cursor": cursor})
    assert other.status_code == 422
    import base64
    import json

    forged = {"s": "best", "o": "desc", "v": [999, 0.1, 5]}
    raw = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    answer = client.get("/api/runs/table", params={**base, "cursor": raw})
    assert answer.status_code == 422 and "cursor" in answer.text
