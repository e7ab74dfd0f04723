"""A worker gone silent is shown as such on the next poll, without a reload, in real
Chromium: the run page's "last heard", its ETA and its ticking duration, and the queue
panel's worker row. The answers the page polls are turned silent by the test (Playwright
routes), so what is checked is the page's own re-rendering, whatever the shared live
stack's upkeep does meanwhile; tests/web/test_page_agreement.py checks that the server
says it the same everywhere.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from backend.formatting import fmt_duration
from jobspec.status import RunStatus
from store import clock
from store.db import session_scope
from store.runs.models import Run
from tests.browser.chromium import ms
from tests.browser.test_runs_table import never_sent, unique
from tests.browser.watch import assert_clean
from tests.web.factories import make_run

pytestmark = pytest.mark.slow

SILENT = "unknown: worker silent"
TOO_BIG = 10_000_000  # MB of GPU memory: no worker has it, so the run stays queued


@pytest.fixture
def running(live):
    """A running run the upkeep leaves alone (its beat stamped ahead), cancelled at the end."""
    progress = {"stage": "finetune", "epoch": 2, "epochs": 5, "step": 1, "steps": 9}
    run_id = make_run(
        "finetune",
        RunStatus.RUNNING,
        name=unique("ui silent"),
        dataset="demo-ui",
        progress=progress,
    )
    with session_scope() as session:
        now = clock.now(session)
        session.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(started_at=now - timedelta(seconds=100), heartbeat_at=now + timedelta(hours=1))
        )
    yield run_id
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.CANCELLED))


def silenced(answer: dict, heard_ago: float) -> dict:
    """A run's answer as the server gives it once its worker has been silent `heard_ago` s."""
    started = datetime.fromisoformat(answer["started_at"])
    heard_at = started + timedelta(seconds=86)
    return {
        **answer,
        "eta_seconds": None,
        "eta_source": None,
        "eta_note": SILENT,
        "worker_silent": True,
        "heard_seconds_ago": heard_ago,
        "heard_at": heard_at.isoformat(),
        "duration_seconds": (heard_at - started).total_seconds(),
    }


def next_poll_drawn(page, pattern: str) -> None:
    """Waits for two more poll answers: the page's script starts a poll only once the one
    before is drawn (api.poll), so the first of them is on the page by the second."""
    for _ in range(2):
        with page.expect_response(pattern, timeout=ms(30)):
            pass


def test_the_run_page_shows_a_silent_worker_on_the_next_poll(watched, running):
    path = f"/api/runs/{running}"
    silent = {"on": False}

    def answer(route):
        response = route.fetch(headers={**route.request.headers, "if-none-match": ""})
        body = response.json()
        if silent["on"]:
            body = silenced(body, 14.0)
        route.fulfill(
            response=response,
            body=json.dumps(body),
            headers={"content-type": "application/json", "cache-control": "no-store"},
        )

    watched.route(f"**{path}", answer)
    watched.goto(f"/runs/{running}")
    heard = watched.locator("#run-heard")
    heard.wait_for(timeout=ms(30))
    assert not heard.inner_text().startswith("silent")
    assert watched.locator("#p-eta").inner_text() != SILENT
    silent["on"] = True
    watched.wait_for_function(
        "() => document.getElementById('run-heard').textContent.startsWith('silent · ')",
        timeout=ms(30),
    )
    assert heard.inner_text() == "silent · last heard 14s ago"
    assert "warn" in heard.get_attribute("class")
    assert watched.locator("#p-eta").inner_text() == SILENT
    # the duration stopped where the worker was last heard (86 s after the start), and stays
    assert watched.locator("#run-duration").inner_text() == fmt_duration(86)
    next_poll_drawn(watched, f"**{path}")  # one more poll, drawn: it does not tick on
    assert watched.locator("#run-duration").inner_text() == fmt_duration(86)
    assert_clean(watched)


def test_the_queue_panel_shows_a_silent_worker_on_the_next_poll(watched, running):
    silent = {"on": False}

    def answer(route):
        response = route.fetch(headers={**route.request.headers, "if-none-match": ""})
        body = response.json()
        body["workers"] = [
            {
                "name": "ui-fake",
                "host": "ui-fake-host",
                "device": "GPU:0",
                "lane": "training",
                "lane_note": "",
                "gpu_memory_mb": None,
                "current_run_id": running,
                "current_run_name": "ui silent",
                "last_seen": body["now"],
                "heard_seconds_ago": 12.0 if silent["on"] else 0.0,
                "silent": silent["on"],
            }
        ]
        route.fulfill(
            response=response,
            body=json.dumps(body),
            headers={"content-type": "application/json", "cache-control": "no-store"},
        )

    watched.route("**/api/queue", answer)
    watched.goto("/runs")
    silent["on"] = True
    row = watched.locator("#queue-workers tr:has-text('ui-fake-host')")
    watched.wait_for_function(
        "() => [...document.querySelectorAll('#queue-workers tr')].some("
        "(tr) => tr.textContent.includes('ui-fake-host') && tr.textContent.includes('silent · '))",
        timeout=ms(30),
    )
    assert "silent · last heard 12s ago" in row.inner_text()
    assert "silent" in row.get_attribute("class")
    assert_clean(watched)


def test_a_queued_runs_place_reads_the_same_after_a_poll(watched, live):
    run_id = never_sent(
        make_run("finetune", RunStatus.QUEUED, name=unique("ui waits"), dataset="demo-ui")
    )
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(min_gpu_memory_mb=TOO_BIG))
    try:
        watched.goto(f"/runs/{run_id}")
        first = watched.locator("#run-waiting").inner_text()
        assert "needs 10,000,000 MB GPU memory" in first or "online" in first, first
        with watched.expect_response("**/api/queue", timeout=ms(30)):
            pass  # the page's poll: its row of the panel, drawn by the script
        # the next poll starts only once that one is drawn (run_detail.js tick)
        with watched.expect_response(f"**/api/runs/{run_id}", timeout=ms(30)):
            pass
        polled = watched.locator("#run-waiting").inner_text()
        if polled != first:
            # The store changed between the paint and the poll (a worker came or went on
            # this busy machine): the server's own page says what the script drew.
            fresh = watched.context.new_page()
            fresh.goto(f"/runs/{run_id}")
            assert fresh.locator("#run-waiting").inner_text() == polled, (first, polled)
            fresh.close()
        assert watched.locator("#run-waiting-label").is_visible()
        assert_clean(watched)
    finally:
        with session_scope() as session:
            session.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.CANCELLED))


# The words an import's row may say while it waits or imports: the server's
# (backend/runs/panel_imports.py words), never a guess of the script's.
IMPORT_WORDS = ("queued: ", "importing on a CPU-lane worker")


def test_an_uploaded_import_shows_the_servers_words_until_it_is_imported(watched, tmp_path):
    from tests.web.test_datasets_pages import _npz_bytes

    name = unique("ui-import")
    path = tmp_path / "images.npz"
    path.write_bytes(_npz_bytes())
    watched.goto("/datasets")
    watched.evaluate(
        """() => { window.__said = [];
        new MutationObserver(() => document.querySelectorAll('#imports tr td:last-child')
          .forEach((td) => window.__said.push(td.textContent)))
          .observe(document.getElementById('imports'), {subtree: true, childList: true,
                                                        characterData: true}); }"""
    )
    watched.set_input_files("#upload-file", str(path))
    watched.fill("#upload-name", name)
    watched.click("#upload-button")
    watched.wait_for_function(
        "() => document.getElementById('imports').textContent.includes('imported')",
        timeout=ms(120),
    )
    said = [text for text in watched.evaluate("() => window.__said") if text]
    waiting = [text for text in said if "imported" not in text]
    assert waiting, said  # it was listed while it waited or imported
    assert all(text.startswith(IMPORT_WORDS) for text in waiting), said
    assert "uploaded" in watched.locator("#upload-progress-text").inner_text()
    assert "a worker is importing it" not in watched.content()
    assert_clean(watched)
