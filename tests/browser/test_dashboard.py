"""The dashboard in real headless Chromium against the app and a real worker (demo data).

One story, in order: launch a pretrain from the form and watch it finish; launch an
augmentation study on its weights and read the verdict; compare two runs; download the
weights and load them in Keras; open a tune study with its plots. Screenshots of every
page land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser.chromium import ms, screenshot
from tests.browser.watch import assert_clean

pytestmark = pytest.mark.slow

state: dict = {}


def fill_params(page, kind: str, values: dict[str, str]) -> None:
    form = page.locator(f"form[data-kind='{kind}']")
    for name, value in values.items():
        form.locator(f"[name='{name}']").fill(value)


def submit(page, kind: str) -> None:
    page.locator(f"form[data-kind='{kind}'] button[type=submit]").click()


PLOTTED_TRACES = """([sel, n]) => [...document.querySelectorAll(sel)]
    .flatMap((e) => e.classList.contains('js-plotly-plot')
        ? [e] : [...e.querySelectorAll('.js-plotly-plot')])
    .reduce((count, plot) => count + (plot.data || []).length, 0) >= n"""


def plots_drawn(page, selector: str, minimum: int = 1) -> None:
    """Plotly has drawn at least `minimum` traces inside (or on) the selected elements."""
    page.wait_for_function(PLOTTED_TRACES, arg=[selector, minimum], timeout=ms(60))


def test_launch_a_pretrain_from_the_form_and_watch_it_finish(page):
    page.goto("/runs/new?kind=pretrain")
    page.locator("#pretrain-dataset").select_option("demo-ui")
    page.locator("#pretrain-name").fill("ui pretrain <b>bold</b>")
    stage = {"epochs": "2", "batch_size": "50"}
    fill_params(
        page,
        "pretrain",
        {f"params.{s}.{k}": v for s in ("ae01", "ae02", "ae03") for k, v in stage.items()}
        | {"params.bn_momentum": "0.9"},
    )
    screenshot(page, "new-run-form")
    submit(page, "pretrain")
    page.wait_for_url(re.compile(r"/runs/\d+$"), timeout=ms(60))
    state["pretrain"] = int(page.url.rsplit("/", 1)[1])
    assert page.locator("h1").first.inner_text().count("<b>bold</b>") == 1  # escaped text
    page.wait_for_function(
        "() => /succeeded|failed|cancelled/"
        ".test((document.querySelector('#run-status') || {}).textContent || '')",
        timeout=ms(240),
    )
    assert page.locator("#run-status").inner_text().strip() == "succeeded"
    plots_drawn(page, "#curves", minimum=2)
    page.wait_for_function(
        "() => { const i = document.querySelector('#recon-img');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=ms(60),
    )
    screenshot(page, "run-pretrain")
    assert_clean(page)


def test_an_augmentation_study_from_the_form_gives_a_verdict(page):
    page.goto(f"/runs/new?kind=ablation&parent={state['pretrain']}")
    page.locator("#ablation-dataset").select_option("demo-ui")
    page.locator("#ablation-factor").select_option("augmentation")
    page.locator("#ablation-seeds").fill("0, 1")
    form = page.locator("form[data-kind='ablation']")
    form.locator("[name='params.encoder']").select_option("single")
    fill_params(
        page,
        "ablation",
        {"params.epochs": "1", "params.batch_size": "50", "params.bn_momentum": "0.9"},
    )
    submit(page, "ablation")
    page.wait_for_url(re.compile(r"/groups/\d+$"), timeout=ms(60))
    state["group"] = int(page.url.rsplit("/", 1)[1])
    page.wait_for_function(
        "() => /^(Augmentation (helped|hurt)|Inconclusive whether augmentation|Both arms are at "
        "chance level)/.test("
        "document.querySelector('#verdict').textContent)",
        timeout=ms(420),
    )
    verdict = page.locator("#verdict").inner_text()
    assert "test accuracy" in verdict
    plots_drawn(page, "#curves")
    screenshot(page, "augmentation-study")
    assert_clean(page)


def test_compare_two_runs_side_by_side(page, live):
    runs = httpx.get(f"{live}/api/runs", params={"group_id": state["group"]}).json()["items"]
    ids = sorted(r["id"] for r in runs if r["status"] == "succeeded")[:2]
    state["finetune"] = ids[0]
    page.goto(f"/compare?ids={ids[0]},{ids[1]}")
    plots_drawn(page, "#curves", minimum=2)
    assert page.locator("tr.diff").count() >= 1  # augment on vs off at least
    screenshot(page, "compare")
    assert_clean(page)


def test_download_the_weights_and_load_them_in_keras(page, tmp_path):
    page.goto(f"/runs/{state['finetune']}")
    link = page.locator("#downloads a[href$='classifier.weights.h5']")
    link.wait_for(timeout=ms(60))
    with page.expect_download() as download:
        link.click()
    path = tmp_path / "classifier.weights.h5"
    download.value.save_as(path)
    screenshot(page, "run-finetune")

    from worker.ml.models import build_single_classifier

    model = build_single_classifier(3, num_classes=10)
    model.load_weights(path)  # raises if the file is not the trained classifier's
    assert model.count_params() > 0
    assert_clean(page)


def test_a_tune_study_page_shows_optunas_plots(page, live):
    body = {
        "kind": "tune",
        "dataset": "demo-ui",
        "params": {
            "n_trials": 3,
            "epochs": 2,
            "batch_size": 50,
            "pruning": False,
            "kernel_sizes": [3, 5],
            "optimizers": ["adam", "sgd"],
        },
    }
    run = httpx.post(f"{live}/api/runs", json=body).json()[0]
    page.goto(f"/studies/{run['id']}")
    page.wait_for_function(
        "() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=ms(240)
    )
    screenshot(page, "study")
    assert_clean(page)


def test_runs_and_datasets_pages(page):
    page.goto("/runs")
    page.locator("#runs-body tr").first.wait_for(timeout=ms(60))
    screenshot(page, "runs")
    page.goto("/datasets")
    screenshot(page, "datasets")
    page.goto("/datasets/demo-ui")
    plots_drawn(page, "body")
    screenshot(page, "dataset")
    assert_clean(page)
