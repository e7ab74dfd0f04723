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


# --- issue 22: curve controls, the panel picker, one-epoch bars, ties, confusion cells ---

PAGED_TEST_IMAGES = 1200  # about 60 right per class: a confusion cell of two pages
CURVES_STATE = """() => {
  const div = document.querySelector('#curves.js-plotly-plot, #curves .js-plotly-plot');
  if (!div || !div.data) return null;
  const l = div.layout;
  return {
    traces: div.data.map((t) => (
      {name: t.name, type: t.type, opacity: t.opacity, xaxis: t.xaxis})),
    xtitles: Object.keys(l).filter((k) => /^xaxis\\d*$/.test(k))
      .map((k) => (l[k].title || {}).text),
    ytypes: Object.keys(l).filter((k) => /^yaxis\\d*$/.test(k))
      .map((k) => l[k].type || 'linear'),
  };
}"""


def curves_state(page) -> dict:
    return page.evaluate(CURVES_STATE)


def test_curve_controls_smooth_switch_axes_pick_panels_and_are_remembered(page, live):
    losses = {"loss": [0.9, 0.5, 0.7, 0.3, 0.4], "val_loss": [0.95, 0.6, 0.75, 0.4, 0.5]}
    run = make_run(
        "pretrain",
        name="ui controls",
        dataset="demo-ui",
        metrics={f"{s}/{k}": v for s in ("ae01", "ae02") for k, v in losses.items()},
    )
    page.goto(f"/runs/{run}")
    plots_drawn(page, "#curves", minimum=4)
    assert len(curves_state(page)["traces"]) == 4
    # Smoothing: each curve smoothed, its raw series kept faintly behind it.
    page.locator("#curve-controls-smooth").fill("0.6")
    page.wait_for_function(f"() => ({CURVES_STATE})().traces.length === 8")
    faint = [t for t in curves_state(page)["traces"] if t["opacity"] == 0.25]
    assert len(faint) == 4 and all(t["name"].endswith("(raw)") for t in faint)
    # Wall time on x, log y.
    page.locator("#curve-controls-x").select_option("wall")
    page.locator("#curve-controls-logy").check()
    page.wait_for_function(f"() => ({CURVES_STATE})().ytypes.every((t) => t === 'log')")
    state = curves_state(page)
    assert all("wall time" in (t or "") for t in state["xtitles"]), state["xtitles"]
    # The panel picker: ae01 hidden, ae02 takes the room.
    page.locator("#curve-controls-panels summary").click()
    page.locator("#curve-controls-panels input[value='ae01/loss']").uncheck()
    page.wait_for_function(f"() => ({CURVES_STATE})().traces.length === 4")
    assert "Panels (1 of 2)" in page.locator("#curve-controls-panels summary").inner_text()
    screenshot(page, "run-curve-controls")
    # Remembered for every run page: another run opens the same way.
    other = make_run(
        "pretrain",
        name="ui controls 2",
        dataset="demo-ui",
        metrics={f"{s}/{k}": v for s in ("ae01", "ae02") for k, v in losses.items()},
    )
    page.goto(f"/runs/{other}")
    page.wait_for_function(
        f"() => {{ const s = ({CURVES_STATE})(); return s && s.traces.length === 4; }}"
    )
    assert page.locator("#curve-controls-logy").is_checked()
    assert page.locator("#curve-controls-x").input_value() == "wall"
    assert page.locator("#curve-controls-smooth").input_value() == "0.6"
    assert {t["xaxis"] for t in curves_state(page)["traces"]} == {"x"}  # ae02 only
    page.evaluate("() => localStorage.removeItem('stacklab.charts.run')")
    assert_clean(page)


def test_a_one_epoch_stage_is_drawn_as_bars(page, partial_run):
    page.goto(f"/runs/{partial_run}")
    plots_drawn(page, "#curves", minimum=4)
    assert {t["type"] for t in curves_state(page)["traces"]} == {"bar"}
    assert page.locator("#curves .bars .bartext").count() >= 4  # the values written on them
    assert_clean(page)


@pytest.fixture(scope="module")
def paged(live):
    from tests.web.report_factories import make_finetune
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    register(make_demo(seed=0, n_train=10, n_test=PAGED_TEST_IMAGES), name="demo-paged")
    return make_finetune(None, name="ui paged cell", n_test=PAGED_TEST_IMAGES, dataset="demo-paged")


def test_a_confusion_cell_lives_in_the_url_and_pages_through_all_its_images(page, paged):
    from tests.web.factories import demo_test_labels

    y = demo_test_labels(PAGED_TEST_IMAGES)
    true = int(y[0])
    total = sum(1 for i in range(len(y)) if i % 2 == 0 and y[i] == true)
    assert 48 < total <= 96
    page.goto(f"/runs/{paged}#confusion={true},{true}")
    page.locator("#cell-errors").wait_for(state="visible")
    assert page.locator("#cell-thumbs figure").count() == 48
    assert page.locator("#cell-note").inner_text() == (
        f"Images 1–48 of {total}, most confident first."
    )
    assert page.locator("#cell-prev").is_disabled()
    page.wait_for_function(  # the open cell is outlined on the heatmap
        "() => (document.querySelector('#confusion').layout.shapes || []).length === 1"
    )
    page.locator("#cell-next").click()
    page.wait_for_function(f"() => location.hash === '#confusion={true},{true}&offset=48'")
    page.wait_for_function(
        f"() => document.querySelectorAll('#cell-thumbs figure').length === {total - 48}"
    )
    assert page.locator("#cell-next").is_disabled()
    page.reload()  # the link reopens the same page of the same cell
    page.locator("#cell-errors").wait_for(state="visible")
    page.wait_for_function(
        f"() => document.querySelectorAll('#cell-thumbs figure').length === {total - 48}"
    )
    assert page.locator("#cell-note").inner_text().startswith(f"Images 49–{total} of {total}")
    screenshot(page, "confusion-cell-paged")
    page.locator("#cell-close").click()
    page.wait_for_function("() => location.hash === ''")
    assert page.evaluate("() => document.querySelector('#confusion').layout.shapes.length") == 0
    assert_clean(page)


def test_compare_bolds_no_run_on_a_tie_and_picks_charts(page, sweep):
    tied = []
    for seed in (7, 8):
        result = finetune_result()
        result["evaluation"]["accuracy"] = 0.75
        tied.append(
            make_run(
                "finetune",
                name=f"ui tie {seed}",
                dataset="demo-ui",
                params={"seed": seed},
                metrics={"finetune/val_accuracy": [0.5, 0.7], "finetune/val_loss": [1.0, 0.8]},
                result=result,
            )
        )
    page.goto(f"/compare?ids={','.join(map(str, tied))}")
    row = page.locator("#tests tr", has_text="test accuracy")
    assert row.locator("td").all_inner_texts()[1:] == ["75.0%", "75.0%"]
    assert row.locator("td.lead").count() == 0  # a tie: no single best
    plots_drawn(page, "#curves", minimum=2)
    charts = page.locator("#curves .plot").count()
    page.locator("#curve-controls-panels summary").click()
    page.locator("#curve-controls-panels input[value='val_accuracy']").uncheck()
    page.wait_for_function(
        f"() => document.querySelectorAll('#curves .plot').length === {charts - 1}"
    )
    page.evaluate("() => localStorage.removeItem('stacklab.charts.compare')")
    assert_clean(page)
