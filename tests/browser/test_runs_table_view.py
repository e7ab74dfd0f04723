"""The runs table as a place to live, in real Chromium against the live app: compact
single-line rows that fit their card at 1366 and 390 px, any parameter or metric as a column
(a searchable picker), sort by any column (aria-sort, keyboard), the filter language with
the server's refusals next to it, saved views, and keyset pages. The view is the URL.

Other browser tests share the store, so every test finds its own runs by a unique name.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.chromium import ms, screenshot
from tests.browser.test_runs_table import CELLS, POLL_NOW, POLLED, unique
from tests.browser.watch import assert_clean
from tests.web.factories import finetune_result, make_run

pytestmark = pytest.mark.slow

# What spills: the page wider than the window, or a visible element past its card's edge
# (tests/browser/overflow.js, shared with test_layout.py).
OVERFLOW = (Path(__file__).parent / "overflow.js").read_text()
LONG = "a-long-run-name-that-says-everything-about-the-run-and-then-some-more"
ROWS = "() => [...document.querySelectorAll('#runs-body tr[data-id]')].map((tr) => tr.dataset.id)"
# Each row's height against one line of its text, and how many rows end above the fold.
ROW_SHAPE = """() => {
  const rows = [...document.querySelectorAll('#runs-body tr[data-id]')];
  const td = rows[0].querySelector('td.name');
  const line = parseFloat(getComputedStyle(td).lineHeight);
  return {
    line,
    heights: rows.map((tr) => tr.getBoundingClientRect().height),
    above: rows.filter((tr) => tr.getBoundingClientRect().bottom <= innerHeight).length,
  };
}"""
WRAP_IN_CARD = """() => {
  const wrap = document.getElementById('runs-wrap'), card = wrap.closest('.card');
  const w = wrap.getBoundingClientRect(), c = card.getBoundingClientRect();
  return {inside: w.left >= c.left - 1 && w.right <= c.right + 1,
          scrolls: wrap.scrollWidth > wrap.clientWidth,
          page: [document.documentElement.scrollWidth, innerWidth]};
}"""


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


@pytest.fixture
def many():
    """20 finished runs and one running, with long names, tags and a score; their prefix."""
    prefix = unique("fold")
    for i in range(20):
        make_run(
            "finetune",
            name=f"{prefix} {LONG} {i:02d}",
            dataset="demo-ui",
            result=finetune_result(),
            tags=["augment:on", "a-rather-long-tag-name", f"seed:{i}"],
            metrics={"finetune/val_accuracy": [0.5, 0.6 + i / 100], "finetune/val_loss": [1, 0.5]},
        )
    make_run(
        "finetune",
        "running",
        name=f"{prefix} {LONG} running",
        dataset="demo-ui",
        progress={"stage": "finetune", "epoch": 2, "epochs": 50, "step": 3, "steps": 90},
    )
    return prefix


def test_rows_are_one_line_and_the_table_fits_its_card_at_1366_and_390(watched, many):
    page = watched
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"/runs?q={many}")
    shape = page.evaluate(ROW_SHAPE)
    assert len(shape["heights"]) == 21
    # One line of text and the cell's padding: never a second line.
    assert max(shape["heights"]) < 2 * shape["line"], shape
    assert shape["above"] >= 15, shape  # MLflow shows 15-20 at this size
    fits = page.evaluate(WRAP_IN_CARD)
    assert fits["inside"] and not fits["scrolls"], fits  # the default columns fit at 1366
    assert page.evaluate(OVERFLOW) == []
    # A long name is clipped, whole on hover.
    name = page.locator("#runs-body td.name a").first
    assert name.get_attribute("title").startswith(f"{many} {LONG}")
    assert name.evaluate("(a) => a.scrollWidth > a.clientWidth")
    screenshot(page, "runs-table-1366")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    shape = page.evaluate(ROW_SHAPE)
    assert max(shape["heights"]) < 2 * shape["line"], shape
    fits = page.evaluate(WRAP_IN_CARD)
    assert fits["inside"] and fits["scrolls"], fits  # the table scrolls inside its card
    assert fits["page"][0] <= fits["page"][1], fits
    assert page.evaluate(OVERFLOW) == []
    screenshot(page, "runs-table-390")
    assert_clean(page)


@pytest.fixture
def three():
    """Three finetunes that differ in a parameter, a metric and a tag: {letter: run id}."""
    prefix = unique("cols")
    runs = {}
    for letter, rate, accuracy, tag in (
        ("a", 0.01, 0.7, "x"),
        ("b", 0.001, 0.9, "y"),
        ("c", 0.1, 0.8, "z"),
    ):
        runs[letter] = str(
            make_run(
                "finetune",
                name=f"{prefix} {letter}",
                dataset="demo-ui",
                params={"learning_rate": rate},
                metrics={"finetune/val_accuracy": [0.5, accuracy]},
                tags=[tag],
            )
        )
    runs["prefix"] = prefix
    return runs


RATE, ACCURACY = "param.learning_rate", "metric.finetune/val_accuracy"


def wait_rows(page, ids: list[str], *, any_order: bool = False) -> None:
    """Waits until the table shows the runs `ids` (in this order unless any_order)."""
    sort = ".sort()" if any_order else ""
    page.wait_for_function(
        f"(ids) => ({ROWS})(){sort}.join() === ids.join()",
        arg=sorted(ids) if any_order else ids,
        timeout=ms(30),
    )


def cells(page, key: str) -> list[str]:
    return page.locator(f'#runs-body td[data-col="{key}"]').all_inner_texts()


def sort_state(page) -> dict[str, str]:
    return page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('.runs thead button.sort')]"
        ".map((b) => [b.dataset.sort, b.closest('th').getAttribute('aria-sort')]))"
    )


def test_any_parameter_or_metric_is_a_column_found_by_search_and_sorted_by_its_header(
    watched, three
):
    page = watched
    ids = lambda *letters: [three[x] for x in letters]  # noqa: E731
    page.goto(f"/runs?q={three['prefix']}")
    assert sort_state(page)["created"] == "descending"
    assert {v for k, v in sort_state(page).items() if k != "created"} == {"none"}
    page.locator("#columns-picker summary").click()
    page.locator("#columns-search").fill("learning")
    rate = page.locator(f'#columns-picker input[value="{RATE}"]')
    rate.wait_for(timeout=ms(30))  # listed from /api/runs/columns
    assert page.locator("#columns-picker input[value=kind]").is_hidden()  # not a match
    rate.check()
    page.locator("#columns-search").fill("val_acc")
    page.locator(f'#columns-picker input[value="{ACCURACY}"]').check()
    page.locator(f'#runs-body td[data-col="{ACCURACY}"]').first.wait_for(timeout=ms(30))
    assert page.locator(f'th[data-col="{RATE}"]').inner_text() == "learning_rate"
    assert page.evaluate(ROWS) == ids("c", "b", "a")  # newest first
    assert cells(page, RATE) == ["0.1", "0.001", "0.01"]
    assert cells(page, ACCURACY) == ["0.8", "0.9", "0.7"]
    assert query_of(page.url)["columns"][0].split(",")[-2:] == [RATE, ACCURACY]

    page.locator(f'th[data-col="{ACCURACY}"] button.sort').click()  # by the metric, best first
    wait_rows(page, ids("b", "c", "a"))
    assert sort_state(page)[ACCURACY] == "descending" and sort_state(page)["created"] == "none"
    assert query_of(page.url)["sort"] == [ACCURACY]

    page.locator(f'th[data-col="{RATE}"] button.sort').focus()  # the keyboard sorts too
    page.keyboard.press("Enter")
    wait_rows(page, ids("c", "a", "b"))
    assert page.evaluate("() => document.activeElement.dataset.sort") == RATE  # focus kept
    page.keyboard.press("Enter")
    wait_rows(page, ids("b", "a", "c"))
    assert sort_state(page)[RATE] == "ascending"
    assert query_of(page.url)["order"] == ["asc"]

    page.reload()  # the URL is the view: columns, sort and order come back
    wait_rows(page, ids("b", "a", "c"))
    page.locator(f'#runs-body td[data-col="{ACCURACY}"]').first.wait_for(timeout=ms(30))
    assert cells(page, RATE) == ["0.001", "0.01", "0.1"]
    assert sort_state(page)[RATE] == "ascending"
    before = page.evaluate(CELLS)  # the server drew the value columns: the poll reads the same
    page.evaluate(POLL_NOW)
    page.wait_for_function(POLLED, timeout=ms(60))
    assert page.evaluate(CELLS) == before
    assert_clean(page)


def test_the_filter_language_filters_in_place_and_a_refusal_shows_next_to_it(watched, three):
    page = watched
    page.goto(f"/runs?q={three['prefix']}")
    before = page.url
    box = page.locator("#f-filter")
    box.fill(f"{ACCURACY} >=")
    box.press("Enter")
    error = page.locator("#filter-error")
    error.wait_for(timeout=ms(30))
    assert "expected" in error.inner_text() and "character" in error.inner_text()
    assert box.get_attribute("aria-invalid") == "true"
    assert page.url == before and len(page.evaluate(ROWS)) == 3  # the table kept its view

    box.fill(f"{ACCURACY} >= 0.75 and {RATE} < 0.05")
    box.press("Enter")
    wait_rows(page, [three["b"]])
    assert error.is_hidden() and box.get_attribute("aria-invalid") is None
    assert query_of(page.url)["filter"] == [f"{ACCURACY} >= 0.75 and {RATE} < 0.05"]

    # The builder writes a clause: any of these tags.
    box.fill("")
    page.locator("#filter-builder summary").click()
    page.locator("#fb-field").select_option("tag")
    page.locator("#fb-op").select_option("in")
    page.locator("#fb-value").fill("x, z")
    page.locator("#fb-add").click()
    wait_rows(page, [three["a"], three["c"]], any_order=True)
    assert box.input_value() == "tag in (x, z)"
    page.reload()
    assert page.locator("#f-filter").input_value() == "tag in (x, z)"
    assert sorted(page.evaluate(ROWS)) == sorted([three["a"], three["c"]])
    csv = page.locator("#csv-export").get_attribute("href")
    assert query_of(csv)["filter"] == ["tag in (x, z)"]  # the export is the same runs
    assert_clean(page, expected_statuses=(422,))


def test_a_saved_view_reopens_its_filter_sort_and_columns_and_can_be_deleted(watched, three):
    page = watched
    page.goto(f"/runs?q={three['prefix']}")
    page.locator("#f-filter").fill("tag != y")
    page.locator("#f-filter").press("Enter")
    page.wait_for_function(f"() => ({ROWS})().length === 2", timeout=ms(30))
    page.locator('th button.sort[data-sort="name"]').click()
    wait_rows(page, [three["c"], three["a"]])
    page.locator("#views-menu summary").click()
    page.locator("#view-name").fill("not y, by name")
    page.locator("#view-save button").click()
    link = page.locator("#views-list a", has_text="not y, by name")
    assert link.get_attribute("aria-current") == "true"  # the view on screen

    page.goto("/runs")
    page.locator("#views-menu summary").click()
    page.locator("#views-list a", has_text="not y, by name").click()
    wait_rows(page, [three["c"], three["a"]])
    asked = query_of(page.url)
    assert asked["filter"] == ["tag != y"] and asked["sort"] == ["name"] and "columns" in asked
    assert page.locator("#f-filter").input_value() == "tag != y"

    page.locator("#views-menu summary").click()
    page.locator('#views-list button[aria-label="Delete the view not y, by name"]').click()
    assert page.locator("#views-list a").count() == 0
    assert page.evaluate("() => localStorage.getItem('stacklab.runs.views')") == "[]"
    assert_clean(page)


def test_pages_go_on_by_cursor_and_back(watched):
    page = watched
    prefix = unique("pages")
    for i in range(52):
        make_run("finetune", name=f"{prefix} {i:02d}", dataset="demo-ui")
    page.goto(f"/runs?q={prefix}")
    assert page.locator("#pager-range").inner_text() == "1–50 of 52"
    first = page.evaluate(ROWS)
    page.locator("#page-next").click()
    page.wait_for_function(f"() => ({ROWS})().length === 2", timeout=ms(30))
    assert "cursor" in query_of(page.url)
    assert page.locator("#pager-range").inner_text() == "51–52 of 52"
    assert page.locator("#page-next").is_hidden()
    assert not set(page.evaluate(ROWS)) & set(first)
    page.locator("#page-prev").click()
    page.wait_for_function(f"() => ({ROWS})().length === 50", timeout=ms(30))
    assert page.evaluate(ROWS) == first and "cursor" not in query_of(page.url)
    page.go_back()  # the browser's history walks the pages too
    page.wait_for_function(f"() => ({ROWS})().length === 2", timeout=ms(30))
    assert_clean(page)
