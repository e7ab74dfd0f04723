"""An ablation study from the form in real Chromium, with real training on imbalanced data:
pretrained vs scratch over 2 seeds, judged by the metric the user picks, to its verdict."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser.chromium import ms, screenshot
from tests.browser.test_dashboard import fill_params, plots_drawn, submit
from tests.browser.watch import assert_clean
from tests.stack import wait_for

pytestmark = pytest.mark.slow

TINY_STAGE = {"epochs": 1, "batch_size": 64}


def finished_pretrain(live: str, dataset: str) -> int:
    """A pretrain of 1 epoch per stage on the data set, waited for (the study's parent)."""
    body = {
        "kind": "pretrain",
        "dataset": dataset,
        "name": "tiny pretrain for a study",
        "params": {stage: TINY_STAGE for stage in ("ae01", "ae02", "ae03")},
    }
    response = httpx.post(f"{live}/api/runs", json=body)
    assert response.status_code == 201, response.text
    run_id = response.json()[0]["id"]
    status = wait_for(
        lambda: (
            (s := httpx.get(f"{live}/api/runs/{run_id}").json()["status"])
            in ("succeeded", "failed", "cancelled")
            and s
        ),
        timeout=240,
        what=f"pretrain {run_id} to finish",
    )
    assert status == "succeeded"
    return run_id


def test_a_pretraining_study_on_imbalanced_data_shows_its_verdict_by_the_chosen_metric(page, live):
    parent = finished_pretrain(live, "demo-imbalanced")
    page.goto(f"/runs/new?kind=ablation&parent={parent}")
    form = page.locator("form[data-kind='ablation']")
    page.locator("#ablation-dataset").select_option("demo-imbalanced")
    auto = form.locator("#ablation-metric option[data-auto]")
    assert auto.inner_text() == "auto: balanced accuracy (imbalanced training classes)"
    page.locator("#ablation-dataset").select_option("demo-ui")
    assert auto.inner_text() == "auto: test accuracy (balanced training classes)"
    page.locator("#ablation-dataset").select_option("demo-imbalanced")
    page.locator("#ablation-factor").select_option("pretraining")
    assert "from scratch" in form.locator("[data-factor-help]").inner_text()
    page.locator("#ablation-metric").select_option("macro_f1")
    page.locator("#ablation-seeds").fill("0, 1")
    assert form.locator("[name='parent_run_id']").input_value() == str(parent)
    fill_params(page, "ablation", {"params.epochs": "1", "params.batch_size": "64"})
    screenshot(page, "new-ablation-form")
    submit(page, "ablation")
    page.wait_for_url(re.compile(r"/groups/\d+$"), timeout=ms(60))
    assert page.locator("#metric-label").inner_text() == "macro-F1"
    assert page.locator(f"#parent a[href='/runs/{parent}']").count() == 1
    page.wait_for_function(
        "() => /^(Pretraining (helped|hurt)|Inconclusive whether pretraining helped)/.test("
        "document.querySelector('#verdict').textContent)",
        timeout=ms(300),
    )
    verdict = page.locator("#verdict").inner_text()
    assert "points macro-F1 on demo-imbalanced" in verdict and "n = 2 seeds" in verdict
    assert "seeds would detect an effect of" in verdict
    chosen = page.locator("#arms tr.chosen").inner_text()
    assert chosen.startswith("macro-F1") and " sd" in chosen
    assert page.locator("#pairs tbody tr").count() == 2
    assert "95% CI of mean d" in page.locator("#difference").inner_text()
    page.locator("#effect").fill("3")
    page.locator("#effect-form button[type=submit]").click()
    page.wait_for_function(
        "() => /effect of 3.0 points/.test(document.querySelector('#effect-answer').textContent)",
        timeout=ms(60),
    )
    plots_drawn(page, "#curves", minimum=4)
    screenshot(page, "ablation-study")
    assert_clean(page)
