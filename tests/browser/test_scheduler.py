"""The scheduler in real Chromium against the live app: a queued run's priority is changed
from its page (PATCH), and the queue panel lists it with its place and why it waits.

The live stack's workers claim what they can: these runs ask for more GPU memory than any
worker has, so they stay queued whatever else runs."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from jobspec.status import RunStatus
from store.db import session_scope
from store.runs.models import Run
from tests.browser.chromium import ms
from tests.browser.test_runs_table import unique
from tests.browser.watch import assert_clean
from tests.web.factories import make_run

pytestmark = pytest.mark.slow

TOO_BIG = 10_000_000  # MB of GPU memory: no worker has it


def test_a_queued_runs_priority_changes_from_its_page_and_the_panel_says_why_it_waits(
    watched, live
):
    name = unique("ui priority")
    run_id = make_run("finetune", "queued", name=name, dataset="demo-ui")
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(min_gpu_memory_mb=TOO_BIG))
    try:
        watched.goto(f"/runs/{run_id}")
        watched.fill("#priority-input", "7")
        watched.click("#priority-form button[type=submit]")
        watched.wait_for_function(
            "() => document.getElementById('run-priority').textContent === '7'", timeout=ms(30)
        )
        with session_scope() as session:
            assert session.get_one(Run, run_id).priority == 7
        watched.goto("/runs")
        row = watched.locator(f"#queue-queued tr:has(a[href='/runs/{run_id}'])")
        row.wait_for(timeout=ms(60))
        text = row.inner_text()
        # no place, and why: what it needs, or (the training worker still starting) that
        # no worker that trains is online yet
        assert text.startswith("–") and "p7" in text, text
        assert "needs 10,000,000 MB GPU memory" in text or "online" in text, text
        assert_clean(watched)
    finally:
        with session_scope() as session:
            session.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.CANCELLED))
