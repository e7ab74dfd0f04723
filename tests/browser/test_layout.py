"""Every page fits its screen in real Chromium: at 390 px (a phone), 1366 px (a laptop) and
1920 px, with data in every list (runs in every status with long names, the queue panel
with waiting runs and their reasons, imports, a study's arms, compare, data sets), the page
never scrolls sideways and nothing spills out of its card. A wide table may scroll inside
a scroller of its own (an element with overflow-x auto) within the card: then that
scroller is what must fit.

Also: the skip link is the first thing the keyboard reaches and lands on the content, and
dark mode (the browser's preference) redefines the page's colours and the charts'.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from jobspec.status import ImportState, RunStatus
from store.artifacts.models import Artifact
from store.datasets.models import DatasetImport
from store.db import session_scope
from store.runs.models import Run
from tests.browser.chromium import ms, screenshot
from tests.browser.test_runs_table import never_sent, unique
from tests.web.factories import finetune_result, make_ablation, make_run

pytestmark = pytest.mark.slow

WIDTHS = (390, 1366, 1920)
TOO_BIG = 10_000_000  # MB of GPU memory: no worker has it, so these runs stay queued
LONG = "a-rather-long-run-name-that-a-researcher-typed-to-say-everything-about-it"

# What spills: the page wider than the window, or a visible element past its card's edge.
OVERFLOW = (Path(__file__).parent / "overflow.js").read_text()


@pytest.fixture(scope="module")
def data(live):
    """Runs in every status (long names), queued runs no worker takes (with their reasons),
    a failed run's error, a study with a running arm, a pending import; tidied at the end."""
    runs = [
        make_run(
            "finetune",
            status,
            name=f"{LONG} {status}",
            dataset="demo-ui",
            result=finetune_result(["a", "b", "c"]) if status == RunStatus.SUCCEEDED else None,
            error="ValueError: " + "x" * 300 if status == RunStatus.FAILED else None,
        )
        for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
    ]
    second = make_run(
        "finetune",
        RunStatus.SUCCEEDED,
        name=f"{LONG} 2",
        dataset="demo-ui",
        result=finetune_result(["a", "b", "c"]),
    )
    running = make_run(
        "finetune",
        RunStatus.RUNNING,
        name=f"{LONG} running",
        dataset="demo-ui",
        progress={"stage": "finetune", "epoch": 2, "epochs": 5, "step": 3, "steps": 9},
    )
    queued = [
        never_sent(make_run("finetune", RunStatus.QUEUED, name=f"{LONG} q{i}", dataset="demo-ui"))
        for i in range(3)
    ]
    with session_scope() as session:
        session.execute(
            update(Run).where(Run.id.in_(queued)).values(min_gpu_memory_mb=TOO_BIG, priority=3)
        )
    group = make_ablation(
        "augmentation",
        {0: (12, 16), 1: (13, 15)},
        name=f"{LONG} study",
        dataset="demo-ui",
        running={1: "on"},
    )
    with session_scope() as session:
        upload = Artifact(name=f"{unique('layout')}.zip", kind="upload", size=3_500_000)
        session.add(upload)
        session.flush()
        pending = DatasetImport(
            name=unique("a-long-import-name-for-the-layout-test"),
            file_name=f"{LONG}.zip",
            upload_artifact_id=upload.id,
            state=ImportState.QUEUED,
        )
        session.add(pending)
        session.flush()
        import_id = pending.id
    all_runs = [*runs, second, running, *queued]
    yield {"runs": runs, "second": second, "running": running, "queued": queued, "group": group}
    with session_scope() as session:
        session.execute(
            update(Run)
            .where(Run.id.in_(all_runs), Run.status.in_(RunStatus.active()))
            .values(status=RunStatus.CANCELLED)
        )
        session.execute(
            update(Run)
            .where(Run.group_id == group, Run.status.in_(RunStatus.active()))
            .values(status=RunStatus.CANCELLED)
        )
        session.execute(
            update(DatasetImport)
            .where(DatasetImport.id == import_id, DatasetImport.state.in_(ImportState.active()))
            .values(state=ImportState.FAILED)
        )


PAGES = {
    "runs": lambda d: "/runs",
    "run-succeeded": lambda d: f"/runs/{d['runs'][0]}",
    "run-failed": lambda d: f"/runs/{d['runs'][1]}",
    "run-running": lambda d: f"/runs/{d['running']}",
    "run-queued": lambda d: f"/runs/{d['queued'][0]}",
    "new-run": lambda d: "/runs/new",
    "compare": lambda d: f"/compare?ids={d['runs'][0]},{d['second']}",
    "study": lambda d: f"/groups/{d['group']}",
    "datasets": lambda d: "/datasets",
    "dataset": lambda d: "/datasets/demo-ui",
    "welcome": lambda d: "/welcome",
}


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_fits_its_screen_and_every_list_its_card(page, data, name):
    path = PAGES[name](data)
    spills = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(path)
        page.wait_for_load_state("networkidle", timeout=ms(60))
        found = page.evaluate(OVERFLOW)
        screenshot(page, f"layout-{name}-{width}")  # to look at, failing or not
        spills += [f"{width}px {path}: {line}" for line in found]
    assert spills == [], "\n".join(spills[:40])
    assert page.js_errors == []


def test_the_skip_link_is_the_first_stop_and_lands_on_the_content(page, data):
    page.goto("/runs")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.textContent, document.activeElement.getAttribute('href')]"
    )
    assert focused == ["Skip to content", "#content"]
    assert page.evaluate("() => document.activeElement.getBoundingClientRect().top >= 0")
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "content"


def test_dark_mode_follows_the_browser_and_the_charts_follow_the_page(page, data):
    colours = "() => ['backgroundColor', 'color'].map((k) => getComputedStyle(document.body)[k])"
    page.emulate_media(color_scheme="light")
    page.goto("/datasets/demo-ui")
    light = page.evaluate(colours)
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate(colours)
    assert light != dark
    lum = lambda rgb: sum(int(v) for v in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])  # noqa: E731
    assert lum(dark[0]) < lum(light[0]) and lum(dark[1]) > lum(dark[0])
    # the chart was re-coloured with the page: its background is the card's, its text the ink
    page.wait_for_selector("#class-distribution .main-svg", timeout=ms(30))
    chart = page.evaluate("""() => {
      const svg = document.querySelector('#class-distribution .main-svg');
      const text = document.querySelector('#class-distribution .main-svg text');
      const card = getComputedStyle(document.querySelector('.card')).backgroundColor;
      const style = (node, key) => (node ? getComputedStyle(node)[key] : null);
      return [style(svg, 'backgroundColor'), card, style(text, 'fill')];
    }""")
    assert chart[0] is not None and chart[0] == chart[1], chart
    assert lum(chart[2]) > lum(chart[1]), chart
    screenshot(page, "dark-dataset")
    for name in ("runs", "run-succeeded", "study"):  # for a look, not a check
        page.goto(PAGES[name](data))
        page.wait_for_load_state("networkidle", timeout=ms(60))
        screenshot(page, f"dark-{name}")


@pytest.mark.parametrize("width", [390, 1366])
def test_the_runs_pages_menus_open_inside_the_window(page, data, width):
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/runs")
    page.wait_for_load_state("networkidle", timeout=ms(60))
    spills = []
    for menu in page.locator("details.menu-button").all():
        menu.evaluate("(node) => { node.open = true; }")
        spills += [f"#{menu.get_attribute('id')} open: {line}" for line in page.evaluate(OVERFLOW)]
        menu.evaluate("(node) => { node.open = false; }")
    assert spills == [], "\n".join(spills)
