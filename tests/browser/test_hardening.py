"""The hardened web in real Chromium: the Content-Security-Policy breaks no page, the API
docs come from this host, and a run name holding a link shows as text in a Plotly legend."""

from __future__ import annotations

import pytest

from tests.browser.chromium import ms
from tests.browser.test_dashboard import plots_drawn
from tests.browser.watch import assert_clean
from tests.web.factories import finetune_result, make_run

pytestmark = pytest.mark.slow

LINK = '<a href="https://example.com">CLICK</a>'
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def link_runs(live):
    metrics = {"finetune/val_accuracy": [0.5, 0.7, 0.8], "finetune/val_loss": [1.0, 0.8, 0.7]}
    return [
        make_run(
            "finetune",
            name=name,
            dataset="demo-ui",
            metrics=metrics,
            result=finetune_result(["<b>cat</b>", "dog"]),
        )
        for name in (LINK, "plain")
    ]


def test_a_link_in_a_run_name_shows_as_text_in_the_compare_legend(watched, link_runs):
    page = watched
    a, b = link_runs
    answer = page.goto(f"/compare?ids={a},{b}")
    assert "frame-ancestors 'none'" in answer.all_headers()["content-security-policy"]
    plots_drawn(page, "#curves", minimum=2)
    plots_drawn(page, "#confusion", minimum=1)
    legend = page.locator("#curves .legendtext").all_text_contents()
    assert any(f"#{a} {LINK}" in text for text in legend), legend
    assert page.locator("a[href*='example.com']").count() == 0  # nowhere on the page
    ticks = page.locator("#confusion .xtick text").all_text_contents()
    assert "<b>cat</b>" in ticks, ticks
    assert_clean(page)


@pytest.mark.parametrize(
    "path", ["/runs", "/runs/new", "/datasets", "/datasets/demo-ui", "/run-detail", "/study"]
)
def test_pages_draw_without_csp_violations(watched, link_runs, path):
    page = watched
    if path == "/run-detail":
        page.goto(f"/runs/{link_runs[0]}")
        plots_drawn(page, "#curves", minimum=1)
        plots_drawn(page, "#confusion", minimum=1)
    elif path == "/study":  # Optuna's plots: contour, slice, history, importances
        from tests.web.test_studies import TRIALS, _tune_study
        from worker.datasets import register
        from worker.ml.datasets.demo import make_demo

        register(make_demo(seed=0, n_train=60, n_test=20), name="demo-tiny")  # the helper's
        page.goto(f"/studies/{_tune_study(TRIALS)[0]}")
        plots_drawn(page, ".js-plotly-plot", minimum=4)
    else:
        page.goto(path)
        page.wait_for_load_state("networkidle")
    if path == "/datasets/demo-ui":
        plots_drawn(page, ".js-plotly-plot", minimum=1)
    assert_clean(page)


def test_swagger_ui_renders_the_operations_from_local_files(watched):
    page = watched
    page.goto("/docs")
    page.wait_for_function(
        "() => document.querySelectorAll('.opblock').length > 10", timeout=ms(60)
    )
    assert page.locator(".opblock-summary-path", has_text="/api/runs/{run_id}").count() >= 1
    page.locator(".opblock-summary", has_text="/api/health").first.click()  # expand one
    page.locator(".try-out__btn").first.click()
    page.locator(".execute").first.click()
    status = page.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=ms(60))
    assert status.inner_text().strip() == "200"
    assert_clean(page)


def test_redoc_renders_from_local_files(watched):
    page = watched
    page.goto("/redoc")
    page.get_by_text("/api/runs/{run_id}", exact=False).first.wait_for(timeout=ms(60))
    assert page.locator("h2", has_text="Health").count() >= 1  # an operation, rendered
    # ReDoc always shows its maker's logo from its CDN: the CSP blocks it before any request
    # leaves the browser (outside_requests stays empty), and ReDoc hides the broken image.
    assert_clean(page, allowed_violations=(f"img-src {REDOC_LOGO}",))
