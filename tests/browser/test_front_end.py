"""What dom.js promises, in real Chromium: a table the server rendered reads the same after the
page's first poll re-renders it, and pages without charts never fetch Plotly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.browser.chromium import ms
from tests.browser.watch import assert_clean
from tests.web.factories import make_run

pytestmark = pytest.mark.slow

CELLS = "() => [...document.querySelectorAll('#runs-body tr td')].map((td) => td.innerText)"


def test_the_runs_table_reads_the_same_after_the_first_poll(watched, live):
    page = watched
    start = datetime.now(UTC) - timedelta(hours=3)
    # 1h 02m 05s: the old script wrote "1h 2m"; 0.90625 is an exact tie at 4 places.
    make_run(
        "finetune",
        name="poll-stable",
        dataset="demo-ui",
        metrics={"finetune/val_accuracy": [0.5, 0.90625], "finetune/val_loss": [1.0, 0.8]},
        started_at=start,
        finished_at=start + timedelta(seconds=3725),
    )
    page.goto("/runs?q=poll-stable")
    before = page.evaluate(CELLS)
    assert "1h 02m" in before, before
    page.evaluate("window.__first = document.querySelector('#runs-body tr td')")
    page.wait_for_function(  # the poll replaced every cell
        "() => document.querySelector('#runs-body tr td') !== window.__first", timeout=ms(60)
    )
    assert page.evaluate(CELLS) == before
    assert_clean(page)


@pytest.mark.parametrize(
    ("path", "charts"),
    [("/runs", False), ("/runs/new", False), ("/datasets", False), ("/datasets/demo-ui", True)],
)
def test_plotly_is_fetched_only_by_pages_with_charts(watched, path, charts):
    page = watched
    page.goto(path)
    page.wait_for_load_state("networkidle")
    fetched = any("/vendor/plotly.min.js" in url for url in page.scripts)
    assert fetched is charts, page.scripts
    assert page.evaluate("typeof dom.fmt.duration === 'function'")
    assert_clean(page)
