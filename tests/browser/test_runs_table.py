"""The runs table's basics and the first-run page in real Chromium, against the live app.

Other browser tests share the store, so every test here finds its own runs by a unique
name; only the first-run demo trains (briefly: its runs are cancelled at the end).
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from store.db import session_scope
from store.runs.models import Run
from store.timeutil import utcnow
from tests.browser.chromium import ms, screenshot
from tests.browser.watch import assert_clean
from tests.web.factories import finetune_result, make_run, owned_rows

pytestmark = pytest.mark.slow

CELLS = "() => [...document.querySelectorAll('#runs-body tr td')].map((td) => td.innerText)"
POLL_NOW = "() => { window.__first = document.querySelector('#runs-body tr td');" \
    " document.dispatchEvent(new Event('visibilitychange')); }"  # fmt: skip
POLLED = "() => document.querySelector('#runs-body tr td') !== window.__first"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def never_sent(run_id: int) -> int:
    """A factory-made queued run the upkeep never sends to the shared worker."""
    with session_scope() as session:
        session.get(Run, run_id).sent_at = utcnow() + timedelta(hours=1)
    return run_id


def test_columns_chosen_are_kept_after_a_reload_and_on_polled_rows(watched):
    page = watched
    name = unique("cols-ui")
    make_run("finetune", name=name, dataset="demo-ui", result=finetune_result(), tags=["ui"])
    page.goto(f"/runs?q={name}")
    assert page.locator("th[data-col=test_accuracy]").is_hidden()
    page.locator("#columns-picker summary").click()
    page.locator("#columns-picker input[value=test_accuracy]").check()
    page.locator("#columns-picker input[value=kind]").uncheck()
    assert page.locator("td[data-col=test_accuracy]").inner_text() == "80.0%"
    assert page.locator("th[data-col=kind]").is_hidden()
    page.reload()
    assert page.locator("td[data-col=test_accuracy]").inner_text() == "80.0%"
    assert page.locator("td[data-col=kind]").is_hidden()
    before = page.evaluate(CELLS)
    page.evaluate(POLL_NOW)  # the poll redraws every row from JSON at once
    page.wait_for_function(POLLED, timeout=ms(60))
    assert page.evaluate(CELLS) == before
    assert page.locator("td[data-col=kind]").is_hidden()
    screenshot(page, "runs-columns")
    assert_clean(page)


def test_csv_export_downloads_the_filtered_table(watched):
    page = watched
    name = unique("=csv-ui")
    make_run("finetune", name=name, dataset="demo-ui", tags=["ui"])
    page.goto(f"/runs?q={quote(name)}")
    with page.expect_download() as download:
        page.locator("#csv-export").click()
    assert download.value.suggested_filename == "runs.csv"
    with open(download.value.path(), encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(io.StringIO(file.read(), newline="")))
    assert [row["name"] for row in rows] == ["'" + name]  # the formula defused
    assert_clean(page)


def test_bulk_cancel_then_delete(watched, live):
    page = watched
    name = unique("bulk-ui")
    queued = never_sent(make_run("finetune", "queued", name=f"{name} queued", dataset="demo-ui"))
    done = make_run(
        "finetune",
        name=f"{name} done",
        dataset="demo-ui",
        metrics={"finetune/val_accuracy": [0.5]},
        artifacts={"classifier.weights.h5": b"weights"},
    )
    page.goto(f"/runs?q={name}")
    page.locator(f"input.pick[value='{queued}']").check()
    page.locator("#bulk-bar button[data-action=cancel]").click()
    page.locator(f"tr[data-id='{queued}'] .badge.cancelled").wait_for(timeout=ms(60))
    assert page.locator("#bulk-result").inner_text() == "1 cancelled."
    page.locator(f"input.pick[value='{done}']").check()
    assert page.locator(f"input.pick[value='{queued}']").is_checked()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#bulk-bar button[data-action=delete]").click()
    page.locator("#runs-body td.empty").wait_for(timeout=ms(60))
    assert page.locator("#bulk-result").inner_text() == "2 deleted."
    for run_id in (queued, done):
        assert httpx.get(f"{live}/api/runs/{run_id}").status_code == 404
    assert set(owned_rows([queued, done]).values()) == {0}
    assert_clean(page)


def test_the_first_run_button_takes_a_new_user_to_a_running_demo(watched, live):
    page = watched
    page.goto("/welcome")
    page.locator("#demo-dataset").select_option("demo-ui")
    screenshot(page, "welcome")
    page.locator("#launch-demo").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"), timeout=ms(60))
    pretrain = int(page.url.rsplit("/", 1)[1])
    try:
        assert "demo: pretrain" in page.locator("h1").first.inner_text()
        page.wait_for_function(
            "() => /running|succeeded/"
            ".test((document.querySelector('#run-status') || {}).textContent || '')",
            timeout=ms(60),
        )
        assert page.locator("body").inner_text().count("demo: augmentation study") >= 4
        assert_clean(page)
    finally:  # the shared worker is free for the other tests
        with session_scope() as session:
            study = session.scalars(select(Run.id).where(Run.parent_run_id == pretrain))
            ids = [pretrain, *study]
        httpx.post(f"{live}/api/runs/bulk", json={"action": "cancel", "ids": ids})
