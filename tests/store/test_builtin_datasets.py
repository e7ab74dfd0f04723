"""Built-in data sets are created idempotently: two processes (here threads) starting at
once both find nothing, both generate it, and both try to store it; the database lets one
row in and both get its id. Seen when two `serve`s started on one data directory: the
second crashed with "UNIQUE constraint failed: datasets.name". On SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

import store.datasets.service as datasets_service
import worker.datasets as datasets_module
from store.datasets.models import DatasetRecord
from store.db import session_scope
from store.errors import InvalidRequest
from worker.ml.datasets.demo import make_demo

BUDGET = 120  # seconds a thread may wait for the other at the barrier


def rows_named(name: str) -> int:
    with session_scope() as session:
        count = select(func.count()).where(DatasetRecord.name == name)
        return int(session.scalar(count) or 0)


@pytest.fixture
def tiny_builtin(monkeypatch):
    """Built-in data sets generated tiny, so the race is about the rows, not the arrays."""
    monkeypatch.setattr(
        datasets_module, "load_dataset", lambda name: make_demo(seed=2, n_train=30, n_test=10)
    )


def race(name: str) -> list[int | BaseException]:
    """ensure_builtin(name) in two threads; returns each one's id (or error)."""
    results: list[int | BaseException] = [RuntimeError("did not finish")] * 2

    def one(slot: int) -> None:
        try:
            results[slot] = datasets_module.ensure_builtin(name)
        except BaseException as err:  # reported by the assertion, not lost in the thread
            results[slot] = err

    threads = [threading.Thread(target=one, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BUDGET)
    return results


def test_two_starts_inserting_the_same_builtin_at_once_both_get_the_one_row(
    store, tiny_builtin, monkeypatch
):
    # Both threads have looked (nothing there) and are about to insert: the real race.
    both_checked = threading.Barrier(2, timeout=BUDGET)
    real_check_room = datasets_service.check_room

    def check_room_then_meet(*args, **kwargs):
        real_check_room(*args, **kwargs)
        both_checked.wait()

    monkeypatch.setattr(datasets_service, "check_room", check_room_then_meet)
    first, second = race("demo")
    assert isinstance(first, int) and first == second, (first, second)
    assert rows_named("demo") == 1


def test_a_start_that_finds_the_builtin_just_stored_uses_it(store, tiny_builtin, monkeypatch):
    # Both looked before either stored it; one stores it whole before the other registers.
    both_generated = threading.Barrier(2, timeout=BUDGET)
    generate = datasets_module.load_dataset

    def generate_then_meet(name):
        dataset = generate(name)
        both_generated.wait()
        return dataset

    monkeypatch.setattr(datasets_module, "load_dataset", generate_then_meet)
    first, second = race("demo-imbalanced")
    assert isinstance(first, int) and first == second, (first, second)
    assert rows_named("demo-imbalanced") == 1
    assert datasets_module.ensure_builtin("demo-imbalanced") == first  # and again, no change


def test_a_builtin_refused_for_another_reason_still_says_why(store, tiny_builtin, monkeypatch):
    def no_room(*_args, **_kwargs):
        raise InvalidRequest("file", "no room for this data set")

    monkeypatch.setattr(datasets_service, "check_room", no_room)
    with pytest.raises(InvalidRequest, match="no room"):
        datasets_module.ensure_builtin("demo-refused")
    assert rows_named("demo-refused") == 0
