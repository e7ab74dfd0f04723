"""The scheduler's states on the pages: a set-aside attempt's note linking the run it made
room for, a running run stepping aside, a queued run's priority control, the priority field
of the new-run form (with the token's ceiling) and the runs table's priority column."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import update

from jobspec.status import AttemptOutcome, RunStatus
from store.db import session_scope
from store.runs import attempts
from store.runs.models import Run
from tests.web.factories import make_run, make_worker, settle_queue


@pytest.fixture(autouse=True)
def own_queue(client):
    yield
    settle_queue()


def _page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return html.unescape(response.text)


def test_a_preempted_attempt_shows_its_note_linking_the_run_it_stepped_aside_for(client):
    urgent = make_run("finetune", RunStatus.QUEUED, name="urgent")
    run_id = make_run("finetune", RunStatus.RUNNING, name="set-aside")
    note = f"set aside for run #{urgent} (priority 10) at finetune epoch 4"
    with session_scope() as session:
        attempt = session.get_one(Run, run_id).attempts
        attempts.hand_back(
            session=session,
            run_id=run_id,
            attempt=attempt,
            reason=note,
            outcome=AttemptOutcome.PREEMPTED,
        )
    page = _page(client, f"/runs/{run_id}")
    assert f'<a href="/runs/{urgent}">#{urgent}</a> (priority 10) at finetune epoch 4' in page
    assert AttemptOutcome.PREEMPTED in page
    listed = client.get(f"/api/runs/{run_id}/attempts").json()
    assert listed[0]["outcome"] == AttemptOutcome.PREEMPTED and listed[0]["note"] == note


def test_a_running_run_asked_to_step_aside_says_so(client):
    urgent = make_run("finetune", RunStatus.QUEUED, name="urgent")
    run_id = make_run("finetune", RunStatus.RUNNING, name="stepping")
    make_worker("stepping-worker", current_run_id=run_id)
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(set_aside_for=urgent))
    page = _page(client, f"/runs/{run_id}")
    assert (
        f'Stepping aside for <a id="set-aside-link" href="/runs/{urgent}">run #{urgent}</a>' in page
    )
    assert "at its next epoch boundary" in page
    assert "last heard" in page  # its worker's liveness
    assert client.get(f"/api/runs/{run_id}").json()["set_aside_for"] == urgent
    running = next(r for r in client.get("/api/queue").json()["running"] if r["id"] == run_id)
    assert running["set_aside_for"] == urgent
    assert f'stepping aside for <a href="/runs/{urgent}">#{urgent}</a>' in _page(client, "/runs")


def test_a_queued_run_offers_its_priority_and_a_started_one_does_not(client):
    waiting = make_run("finetune", RunStatus.QUEUED, name="waits")
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == waiting).values(priority=4))
    page = _page(client, f"/runs/{waiting}")
    assert '<span id="run-priority">4</span>' in page
    assert '<form id="priority-form" class="inline" >' in page  # shown
    assert 'max="10"' in page and "at most 10" in page  # the open site's ceiling
    done = make_run("finetune", RunStatus.SUCCEEDED, name="done")
    assert '<form id="priority-form" class="inline" hidden>' in _page(client, f"/runs/{done}")


def test_the_new_run_form_has_a_priority_field_with_the_ceiling_and_clones_keep_it(client):
    page = _page(client, "/runs/new")
    assert 'name="priority"' in page and "at most 10" in page
    source = make_run("finetune", RunStatus.SUCCEEDED, name="source")
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == source).values(priority=-3))
    clone = _page(client, f"/runs/new?clone={source}&kind=finetune")
    assert (
        'id="finetune-priority" name="priority" min="-1000" max="10" step="1" value="-3"' in clone
    )


def test_the_runs_table_has_a_sortable_priority_column(client):
    low = make_run("finetune", RunStatus.SUCCEEDED, name="low")
    high = make_run("finetune", RunStatus.SUCCEEDED, name="high")
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == high).values(priority=9))
        session.execute(update(Run).where(Run.id == low).values(priority=-9))
    table = client.get("/api/runs/table", params={"sort": "priority", "order": "desc"}).json()
    ids = [row["id"] for row in table["items"]]
    assert ids.index(high) < ids.index(low)
    assert next(r for r in table["items"] if r["id"] == high)["priority"] == 9
    page = _page(client, "/runs?sort=priority&order=asc")
    # the column's header says how the table is sorted (aria-sort) and shows the arrow
    header = re.search(r'<th aria-sort="(\w+)"[^>]*data-col="priority"[^>]*>(.*?)</th>', page, re.S)
    assert header is not None, "no priority column header"
    assert header[1] == "ascending" and 'data-sort="priority"' in header[2] and "▲" in header[2]
