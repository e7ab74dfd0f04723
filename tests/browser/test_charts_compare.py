"""In Chromium: a run cancelled mid-training is marked partial (badge, card, a warning on
its weights, the evaluate-now button) with one legend per chart panel; the compare page
puts the differing parameters first and groups seeds with mean ± sd. Factory-made runs."""

from __future__ import annotations

import pytest

from tests.browser.chromium import ms, screenshot
from tests.browser.test_dashboard import plots_drawn
from tests.browser.watch import assert_clean
from tests.web.factories import finetune_result, make_run

pytestmark = pytest.mark.slow  # a live app, its worker and Chromium

CANCELLED = {
    "epochs_run": 1,
    "epochs_planned": 50,
    "best_epoch": 1,
    "restored_best_weights": True,
    "cancelled": True,
    "monitor": "val_loss",
}
ACCURACY = {(False, 0): 0.70, (False, 1): 0.74, (True, 0): 0.80, (True, 1): 0.86}


@pytest.fixture(scope="module")
def partial_run(live):
    return make_run(
        "finetune",
        "cancelled",
        name="ui cancelled in epoch 1",
        dataset="demo-ui",
        metrics={
            "finetune/loss": [1.2],
            "finetune/val_loss": [1.1],
            "finetune/accuracy": [0.3],
            "finetune/val_accuracy": [0.28],
        },
        result={"training": CANCELLED},
        artifacts={"classifier.keras": b"keras", "classifier.weights.h5": b"h5"},
    )


@pytest.fixture(scope="module")
def sweep(live):
    runs = []
    for (augment, seed), accuracy in ACCURACY.items():
        result = finetune_result()
        result["evaluation"]["accuracy"] = accuracy
        runs.append(
            make_run(
                "finetune",
                name=f"ui augment {augment} seed {seed}",
                dataset="demo-ui",
                params={"augment": augment, "seed": seed},
                metrics={"finetune/val_accuracy": [0.5, accuracy - 0.05]},
                result=result,
            )
        )
    return runs


def test_a_run_cancelled_in_epoch_1_shows_partial_and_warns_on_its_weights(page, partial_run):
    page.goto(f"/runs/{partial_run}")
    badge = page.locator("#run-partial")
    assert badge.is_visible() and badge.inner_text() == "partial"
    assert badge.get_attribute("title") == "cancelled in finetune at epoch 1 of 50"
    assert "partial model from epoch 1" in page.locator("#partial-text").inner_text()
    assert page.locator("#btn-evaluate").is_visible()
    warnings = page.locator("#downloads .partial-note").all_inner_texts()
    assert len(warnings) == 2 and all("partial model from epoch 1 of 50" in w for w in warnings)
    plots_drawn(page, "#curves", minimum=4)
    # One legend per panel (loss, accuracy), each inside its own panel.
    assert page.locator("#curves .infolayer > g[class^='legend']").count() == 2
    screenshot(page, "run-partial")
    assert_clean(page)


def test_compare_puts_differing_parameters_first_and_groups_seeds(page, sweep):
    page.goto(f"/compare?ids={','.join(map(str, sweep))}")
    assert page.locator("#only-diff").is_checked()
    visible = page.locator("#params tbody tr:visible td:first-child").all_inner_texts()
    assert [v.split(" ")[0] for v in visible] == ["augment", "seed"]
    # The diff sits above the scores and the curves, not thousands of pixels down.
    top = {n: page.locator(f"#{n}").bounding_box()["y"] for n in ("params", "groups", "curves")}
    assert top["params"] < top["groups"] < top["curves"] and top["params"] < 600
    note = page.locator("#groups-note").inner_text()
    assert "grouped by augment" in note and "mean ± sd over 2 seeds" in note
    heads = page.locator("#groups th").all_text_contents()  # (styled upper case)
    assert heads[1:] == ["augment = false (n=2)", "augment = true (n=2)"]
    accuracy = page.locator("#groups tr", has_text="test accuracy").locator("td").all_inner_texts()
    assert accuracy[1] == "72.0% ± 2.8%" and accuracy[2] == "83.0% ± 4.2%"
    page.locator("#only-diff").uncheck()
    assert page.locator("#params tbody tr:visible").count() > 10  # every parameter again
    screenshot(page, "compare-seed-groups")
    assert_clean(page)


def test_pretrain_stages_are_small_multiples_on_whole_epochs_with_distinct_series(page, live):
    """Item 5 in the browser: each stage on its own epoch axis starting at 1 with whole
    ticks, train and validation told apart, one legend per panel."""
    losses = {"loss": [0.09, 0.06, 0.05], "val_loss": [0.08, 0.07, 0.065]}
    run = make_run(
        "pretrain",
        name="ui stages",
        dataset="demo-ui",
        metrics={
            f"{stage}/{k}": v for stage in ("ae01", "ae02", "ae03") for k, v in losses.items()
        },
    )
    page.goto(f"/runs/{run}")
    plots_drawn(page, "#curves", minimum=6)
    drawn = page.evaluate(
        """() => {
          const div = document.querySelector('#curves.js-plotly-plot, #curves .js-plotly-plot');
          const layout = div._fullLayout;
          const tickTexts = (k) => Array.from(
            div.querySelectorAll(`.${k.replace('axis', '')}tick text`)).map((t) => t.textContent);
          const axes = Object.keys(layout).filter((k) => /^xaxis\\d*$/.test(k))
            .map((k) => ({name: k, ticks: tickTexts(k)}));
          const traces = div._fullData.map((t) => (
            {name: t.name, color: t.line.color, dash: t.line.dash, xaxis: t.xaxis}));
          return {axes, traces};
        }"""
    )
    used = {t["xaxis"] for t in drawn["traces"]}
    assert len(drawn["axes"]) >= 3, drawn["axes"]
    assert len(used) == 3  # one epoch axis per stage: ae02/ae03 are not lone dots
    for axis in drawn["axes"]:
        labels = [t for t in axis["ticks"] if t]
        assert all(t.isdigit() and int(t) >= 1 for t in labels), labels  # 1, 2, 3: no 1.2
    train = [t for t in drawn["traces"] if "val" not in t["name"]]
    val = [t for t in drawn["traces"] if "val" in t["name"]]
    assert train and val
    assert {(t["color"], t["dash"]) for t in train}.isdisjoint(
        {(t["color"], t["dash"]) for t in val}
    )
    assert_clean(page)


def test_the_queue_panel_estimates_a_run_nobody_has_measured_yet(page, live):
    """Item 8 in the browser: queued runs of a model never measured still get an ETA (from
    the default rate), not a dash that blanks the runs after them."""
    from store.db import session_scope
    from store.runs.models import Run
    from tests.browser.test_runs_table import never_sent

    first = never_sent(
        make_run(
            "finetune",
            "queued",
            name="ui eta first",
            dataset="demo-ui",
            params={"encoder": "scratch", "architecture": "single", "epochs": 3},
        )
    )
    second = never_sent(make_run("pretrain", "queued", name="ui eta second", dataset="demo-ui"))
    try:
        page.goto("/runs")
        for run_id in (first, second):
            row = page.locator(f"#queue-queued tr:has(a[href='/runs/{run_id}'])")
            row.wait_for(timeout=ms(60))
            assert "done in" in row.locator("td").last.inner_text()
    finally:
        with session_scope() as session:
            for run_id in (first, second):
                session.get(Run, run_id).status = "cancelled"
