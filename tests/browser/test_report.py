"""An experiment report in real Chromium: edit and save the notes, export the report and
open the file offline, and on a finetune's page click a confusion-matrix cell to see its
test images. Runs are factory-made in the live store (demo-ui's test set, 60 images), so
this takes seconds; the dashboard story trains real ones."""

from __future__ import annotations

import pytest

from tests.browser.chromium import ms, screenshot
from tests.browser.watch import assert_clean
from tests.web.factories import demo_test_labels
from tests.web.report_factories import make_finetune, make_pretrain

pytestmark = pytest.mark.slow

N_TEST = 60  # demo-ui's test set (tests/browser/conftest.py)
IMAGES_LOADED = """(sel) => { const imgs = [...document.querySelectorAll(sel)];
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0); }"""


@pytest.fixture(scope="module")
def experiment(live):
    pretrain = make_pretrain("ui experiment", dataset="demo-ui", notes="first *draft*")
    finetune = make_finetune(pretrain, name="ui finetune", dataset="demo-ui", n_test=N_TEST)
    return {"pretrain": pretrain, "finetune": finetune}


def test_edit_the_notes_and_export_the_report(watched, experiment, browser, tmp_path):
    page = watched
    page.goto(f"/experiments/{experiment['pretrain']}")
    assert page.locator("#notes-view em").inner_text() == "draft"
    page.locator("#notes-edit").click()
    box = page.locator("#notes-card textarea")
    box.fill("## Verdict\n\n**Saved** from the browser <script>window.__x = 1</script>")
    page.locator("#notes-card button[type=submit]").click()
    page.locator("#notes-view h2").wait_for(timeout=ms(60))
    assert page.locator("#notes-view strong").inner_text() == "Saved"
    assert "<script>window.__x = 1</script>" in page.locator("#notes-view").inner_text()
    assert page.evaluate("window.__x") is None  # shown as text, never run
    page.reload()
    assert page.locator("#notes-view strong").inner_text() == "Saved"  # stored
    screenshot(page, "experiment-report")

    with page.expect_download() as download:
        page.locator("#export-link").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name.startswith(f"experiment-{experiment['pretrain']}")
    assert_clean(page)

    offline = browser.new_context()  # no base URL; anything but the file itself is refused
    fetched: list[str] = []

    def refuse(route):
        url = route.request.url
        if not url.startswith(("file://", "data:")):
            fetched.append(url)
            return route.abort()
        return route.continue_()

    offline.route("**/*", refuse)
    file_page = offline.new_page()
    file_page.goto(path.as_uri())
    assert file_page.locator("h1").inner_text() == "ui experiment"
    assert file_page.locator("#notes-view strong").inner_text() == "Saved"
    assert file_page.locator("svg.chart").count() >= 1
    file_page.wait_for_function(IMAGES_LOADED, arg="img.report-recon", timeout=ms(60))
    assert "stopped early at epoch 3 of 5" in file_page.content()
    screenshot(file_page, "experiment-report-exported")
    offline.close()
    assert fetched == []


def test_click_a_confusion_cell_and_see_its_images(watched, experiment):
    page = watched
    y = demo_test_labels(N_TEST)
    true = int(y[1])  # image 1 is a mistake: predicted one class up
    pred = (true + 1) % 10
    page.goto(f"/runs/{experiment['finetune']}")
    page.wait_for_function(
        "() => { const p = document.querySelector('#confusion');"
        " return p && p.data && p.data.length > 0; }",
        timeout=ms(60),
    )
    area = page.locator("#confusion .nsewdrag").first
    area.scroll_into_view_if_needed()
    box = area.bounding_box()
    x = box["x"] + (pred + 0.5) / 10 * box["width"]
    y_pos = box["y"] + (true + 0.5) / 10 * box["height"]  # rows top to bottom
    page.mouse.click(x, y_pos)
    page.locator("#cell-errors").wait_for(state="visible", timeout=ms(60))
    page.wait_for_function(IMAGES_LOADED, arg="#cell-thumbs img", timeout=ms(60))
    title = page.locator("#cell-title").inner_text()
    assert title.startswith("true ") and "predicted" in title
    captions = page.locator("#cell-thumbs figcaption").all_inner_texts()
    assert captions and all("%" in c for c in captions)
    assert page.locator("#cell-thumbs figure").first.get_attribute("data-index") is not None
    page.wait_for_function(IMAGES_LOADED, arg="#mistakes img", timeout=ms(60))
    assert page.locator("#mistakes .mistake-row").count() >= 1
    screenshot(page, "finetune-errors")
    assert_clean(page)


def test_the_report_follows_a_finetune_as_it_finishes(watched, live):
    from datetime import timedelta

    from store.db import session_scope
    from store.runs import attempts
    from store.runs.models import Run
    from store.timeutil import utcnow
    from tests.web.factories import make_run

    page = watched
    pretrain = make_pretrain("ui live experiment", dataset="demo-ui")
    running = make_run(
        "finetune", "running", name="ui live finetune", dataset="demo-ui", parent_run_id=pretrain
    )
    with session_scope() as session:  # its "worker" stays alive for the live app's upkeep
        session.get(Run, running).heartbeat_at = utcnow() + timedelta(hours=1)
    page.goto(f"/experiments/{pretrain}")
    assert page.locator("#report-live").is_visible()
    badge = page.locator(f"#finetunes-card [data-status-of='{running}']")
    assert badge.inner_text() == "running"
    page.locator("#notes-edit").click()  # an open editor survives the sections' redraw
    page.locator("#notes-card textarea").fill("typing while it runs")
    with session_scope() as session:
        result = {"training": {"epochs_run": 2, "epochs_planned": 4, "stopped_early": True}}
        attempts.finish(
            session=session, run_id=running, attempt=1, status="succeeded", result=result
        )
    page.wait_for_function(
        "(id) => document.querySelector(`#finetunes-card [data-status-of='${id}']`)"
        ".textContent === 'succeeded'",
        arg=running,
        timeout=ms(60),
    )
    page.locator("#report-live").wait_for(state="hidden", timeout=ms(60))
    assert page.locator("#notes-card textarea").input_value() == "typing while it runs"
    assert page.locator("#finetunes-card td[title='stopped early at epoch 2 of 4']").count() == 1
    assert_clean(page)
