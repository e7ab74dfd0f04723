"""A full disk (SQLite refusing a new page for real: tests/fault_switch) takes the webhook
event, never the run's final write: where the status change still fits and the event does
not, the first try fails (SQLite rolls the whole transaction back), and its retry commits
the change without its event (store/notify/outbox.py SKIP_SECONDS), logged."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from jobspec.status import RunStatus
from store.db import reset_caches, session_scope
from store.notify import outbox
from store.notify.models import OutboxEvent
from store.notify.vocabulary import NotifyEvent
from store.runs.models import Run
from store.settings import get_settings
from tests.fault_switch import sitecustomize as fault_switch
from tests.ops.helpers import finish, running_run


@pytest.fixture
def full_disk(store, tmp_path, monkeypatch):
    url = get_settings().sqlalchemy_url
    if not url.startswith("sqlite"):
        pytest.skip("a full disk is SQLite's page limit here")
    flag = tmp_path / "disk-full"
    fault_switch.install()
    monkeypatch.setenv("STACKLAB_TEST_DISK_FULL_FILE", str(flag))
    reset_caches()  # connections made again, with the switch
    yield lambda: (flag.touch(), fault_switch.fill_free_pages(url.removeprefix("sqlite:///")))
    flag.unlink(missing_ok=True)
    outbox._skip_until[0] = 0.0  # later tests write events again
    reset_caches()
    fault_switch.free_pages_again(url.removeprefix("sqlite:///"))


def test_a_full_disk_drops_the_event_and_the_final_write_lands(store, full_disk, caplog):
    run_id = running_run(store)
    full_disk()
    for n in range(10_000):  # fill the events' last page: the next event needs a new one
        try:
            with session_scope() as session:
                outbox.add(
                    session,
                    key=f"filler:{run_id}:{n}",
                    event=NotifyEvent.RUN_FAILED,
                    payload={"run": {"id": 0}},
                )
        except OperationalError:
            break
    else:
        pytest.fail("the events table never filled up")
    with caplog.at_level(logging.WARNING, logger="store.notify.outbox"):
        # SQLite rolls the whole transaction back on a full disk: the first try fails, as
        # the final write does when the disk is full; its retry goes without the event.
        with pytest.raises(OperationalError):
            finish(run_id, RunStatus.SUCCEEDED)
        finish(run_id, RunStatus.SUCCEEDED)
    with session_scope() as session:
        assert session.get_one(Run, run_id).status == RunStatus.SUCCEEDED
    assert "notification was not stored" in caplog.text
    assert not [key for key in event_keys() if key.startswith(f"run:{run_id}:")]


def event_keys() -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(OutboxEvent.key)))
