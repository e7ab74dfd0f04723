"""The new-run form in Chromium: reviewing a study's settings before launch, every field
error at once (the browser's and the server's), a quick run that finishes, and the form's
parent -> data set, augmentation switch and wide layout."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser.chromium import ms, screenshot
from tests.browser.watch import assert_clean
from tests.web.factories import make_run, make_tune_study

pytestmark = pytest.mark.slow

TRAINED = {"trained_stages": ["ae01", "ae02", "ae03"]}
# A tune of AE01 whose settings make a quick pretrain: 100 images, 2 batches an epoch.
TUNE = {
    "stage": "ae01",
    "epochs": 1,
    "batch_size": 16,
    "bn_momentum": 0.9,
    "validation_fraction": 0.2,
    "seed": 2,
    "max_train_images": 100,
    "steps_per_epoch": 2,
}


def finished_tune() -> int:
    """A tune run on demo-ui with two completed trials in its Optuna study (rows only)."""
    return make_tune_study(
        TUNE, [(3, "adam", 0.2), (5, "rmsprop", 0.1)], prefix="ui-forms", dataset="demo-ui"
    )


ERRORS_SHOWN = """(f) => Object.fromEntries([...f.querySelectorAll('[data-field]')]
    .map((d) => [d.dataset.field, (d.querySelector(':scope > [data-error]') || {}).textContent])
    .filter(([, text]) => text))"""
# Null-safe: the page reloads itself when a new attempt ends (run_detail.js), and the poll
# may land while the next document has no badge yet.
FINISHED = (
    "() => /succeeded|failed|cancelled/"
    ".test((document.querySelector('#run-status') || {}).textContent || '')"
)


def errors_shown(form) -> dict[str, str]:
    """Each field's error message as the form shows it, by field path."""
    return form.evaluate(ERRORS_SHOWN)


def test_a_study_opens_its_settings_for_review_and_launches_a_quick_run(watched, live):
    page = watched
    tune = finished_tune()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(f"/studies/{tune}")
    page.locator("#pretrain-from-best").click()
    page.wait_for_url(f"**/studies/{tune}/pretrain")
    assert posts == []  # opening the form queues nothing
    form = page.locator("form[data-kind='pretrain']")
    assert form.is_visible() and page.locator("[data-review]").is_visible()
    value = lambda name: form.locator(f"[name='params.{name}']").input_value()  # noqa: E731
    assert (value("ae01.kernel_size"), value("ae01.optimizer")) == ("5", "rmsprop")
    assert (value("ae01.epochs"), value("ae03.batch_size"), value("bn_momentum")) == (
        "1",
        "16",
        "0.9",
    )
    assert (value("max_train_images"), value("steps_per_epoch"), value("split_seed")) == (
        "100",
        "2",
        "2",
    )
    screenshot(page, "new-run-review")

    # The browser's own checks: three bad fields, three messages, no request.
    form.locator("[name='params.ae01.epochs']").fill("0")
    form.locator("[name='params.ae01.batch_size']").fill("-5")
    form.locator("[name='params.validation_fraction']").fill("1.5")
    form.locator("button[type=submit]").click()
    shown = errors_shown(form)
    assert set(shown) == {
        "params.ae01.epochs",
        "params.ae01.batch_size",
        "params.validation_fraction",
    }
    assert posts == []
    screenshot(page, "new-run-errors")
    form.locator("[name='params.ae01.epochs']").fill("1")
    assert "params.ae01.epochs" not in errors_shown(form)  # cleared as it becomes valid

    # What only the server knows (bounds the inputs cannot say), all in one answer.
    form.locator("[name='params.ae01.batch_size']").fill("16")
    form.locator("[name='params.validation_fraction']").fill("0")
    form.locator("[name='params.ae01.learning_rate']").fill("0")
    form.locator("button[type=submit]").click()
    page.wait_for_function(
        "(f) => f.querySelectorAll('[data-error]:not(:empty)').length >= 2",
        arg=form.element_handle(),
    )
    assert set(errors_shown(form)) == {"params.validation_fraction", "params.ae01.learning_rate"}
    assert len(posts) == 1

    form.locator("[name='params.validation_fraction']").fill("0.2")
    form.locator("[name='params.ae01.learning_rate']").fill("0.001")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"), timeout=ms(60))
    run_id = int(page.url.rsplit("/", 1)[1])
    run = httpx.get(f"{live}/api/runs/{run_id}").json()
    assert run["source_run_id"] == tune and "quick" in run["tags"]
    assert run["params"]["ae01"]["kernel_size"] == 5 and run["params"]["steps_per_epoch"] == 2
    page.wait_for_function(FINISHED, timeout=ms(300))
    assert page.locator("#run-status").inner_text().strip() == "succeeded"
    assert page.locator(".tag", has_text="quick").count() >= 1
    assert_clean(page, expected_statuses=(422,))


def test_the_finetune_form_follows_its_parent_and_switches_augmentation(watched):
    page = watched
    parent = make_run(
        "pretrain", name="ui parent on imbalanced", dataset="demo-imbalanced", result=TRAINED
    )
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto("/runs/new?kind=finetune")
    form = page.locator("form[data-kind='finetune']")
    dataset, warning = form.locator("[name='dataset']"), form.locator("[data-warning]")
    form.locator("[name='parent_run_id']").select_option(str(parent))
    assert dataset.input_value() == "demo-imbalanced" and warning.is_hidden()
    dataset.select_option("demo-ui")
    assert warning.is_visible() and "demo-imbalanced" in warning.inner_text()

    settings = form.locator("fieldset[data-field='params.augmentation']")
    assert settings.evaluate("(f) => f.disabled")
    assert form.locator("[name='params.augmentation.rotation_range']").is_disabled()
    form.locator("[name='params.augment']").check()
    assert form.locator("[name='params.augmentation.rotation_range']").is_enabled()

    # 1920 px wide: the run's fields and its parameters side by side, the data set in full.
    run_box = form.locator("fieldset.run-fields").bounding_box()
    params_box = form.locator("fieldset.param-fields").bounding_box()
    assert params_box["x"] >= run_box["x"] + run_box["width"]
    assert form.bounding_box()["width"] > 1500
    fits = dataset.evaluate(
        """(s) => { const c = document.createElement('canvas').getContext('2d');
            c.font = getComputedStyle(s).font;
            return c.measureText(s.selectedOptions[0].textContent).width + 30 <= s.clientWidth; }"""
    )
    assert fits, "the data set's name and sizes are not cut off"
    screenshot(page, "new-run-wide")
    assert_clean(page, expected_statuses=(422,))


def test_a_quick_finetune_on_demo_trains_a_sample_for_a_few_batches_and_finishes(watched, live):
    """Issue 10 item 3: a quick run on the built-in `demo` (5,000 training images) from the
    form, limited to a sample and a few batches per epoch, finishes scored on the test set.
    How long it takes (under a minute on 2 CPU cores) is bench/quick_run.py's to measure."""
    page = watched
    page.goto("/runs/new?kind=finetune")
    form = page.locator("form[data-kind='finetune']")
    form.locator("[name='dataset']").select_option("demo")
    form.locator("[name='params.encoder']").select_option("scratch")
    for name, value in {
        "params.epochs": "2",
        "params.batch_size": "64",
        "params.max_train_images": "500",
        "params.steps_per_epoch": "4",
        "params.bn_momentum": "0.9",
    }.items():
        form.locator(f"[name='{name}']").fill(value)
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"), timeout=ms(60))
    page.wait_for_function(FINISHED, timeout=ms(300))
    run = httpx.get(f"{live}/api/runs/{page.url.rsplit('/', 1)[1]}").json()
    assert run["status"] == "succeeded" and "quick" in run["tags"]
    assert run["result"]["evaluation"]["confusion_matrix"]  # scored on demo's test set
    split = run["result"]["split"]  # a sample of the 5,000, as asked
    assert split["n_train"] > 0 and split["n_train"] + split["n_val"] <= 500, split
    assert run["result"]["training"]["epochs_run"] == 2
    # The page reloads itself when a run's first attempt ends (to show it): read what it
    # recorded once that navigation is over.
    from playwright.sync_api import Error as PlaywrightError

    for _ in range(3):
        try:
            page.wait_for_load_state("load")
            page.wait_for_function(FINISHED)
            assert_clean(page, expected_statuses=(422,))
            break
        except PlaywrightError as err:  # the reload destroyed the context mid-read
            if "context was destroyed" not in str(err) and "detached" not in str(err):
                raise
    else:
        raise AssertionError("the run page never settled after the run finished")


# --- issue 22 items 10-11: presets on the form, the Optuna page ---

PRESET_STATE = "(f) => f.querySelector('[data-preset-state]').textContent.trim()"
PRESSED = """(f) => [...f.querySelectorAll('[data-preset]')]
    .filter((b) => b.getAttribute('aria-pressed') === 'true').map((b) => b.dataset.preset)"""


def test_picking_a_preset_sets_every_field_it_names_and_shows_which_is_active(watched):
    from jobspec import presets

    page = watched
    page.goto("/runs/new?kind=pretrain")
    form = page.locator("form[data-kind='pretrain']")
    value = lambda name: form.locator(f"[name='{name}']").input_value()  # noqa: E731
    assert form.evaluate(PRESSED) == ["seed"] and form.evaluate(PRESET_STATE) == "Seed's settings"
    form.locator("[name='params.seed']").fill("7")  # a field no preset names

    for name in ("quick", "full", "seed", "quick"):
        form.locator(f"[data-preset='{name}']").click()
        want = presets.values("pretrain", presets.PresetName(name))
        got = {path: value(f"params.{path}") for path in want}
        assert got == {p: "" if v is None else str(v) for p, v in want.items()}, name
        assert form.evaluate(PRESSED) == [name]
        assert form.evaluate(PRESET_STATE) == presets.INFO[presets.PresetName(name)].label
    assert value("params.seed") == "7"  # left as it was
    assert "1500" in form.locator("[data-preset-note]").inner_text()
    screenshot(page, "new-run-presets")

    # Editing a field the preset set: "custom"; putting it back: the preset again.
    form.locator("[name='params.ae02.epochs']").fill("3")
    assert form.evaluate(PRESSED) == [] and form.evaluate(PRESET_STATE) == "custom"
    form.locator("[name='params.ae02.epochs']").fill("2")
    assert form.evaluate(PRESSED) == ["quick"]

    # Every kind's tab has its own presets (the study's are its finetunes').
    for kind in ("tune", "finetune", "ablation"):
        page.locator(f"[data-tab='{kind}']").click()
        other = page.locator(f"form[data-kind='{kind}']")
        other.locator("[data-preset='quick']").click()
        source = "finetune" if kind == "ablation" else kind
        for path, want in presets.values(source, presets.PresetName.QUICK).items():
            got = other.locator(f"[name='params.{path}']").input_value()
            assert got == ("" if want is None else str(want)), (kind, path)
        assert other.evaluate(PRESSED) == ["quick"]
    assert_clean(page)


def test_a_studys_review_keeps_its_values_and_shows_them_as_custom(watched):
    page = watched
    tune = finished_tune()
    page.goto(f"/studies/{tune}/pretrain")
    form = page.locator("form[data-kind='pretrain']")
    assert form.evaluate(PRESSED) == [] and form.evaluate(PRESET_STATE) == "custom"
    assert "the study's" in form.locator("[data-preset-note]").inner_text()
    value = lambda name: form.locator(f"[name='params.{name}']").input_value()  # noqa: E731
    assert (value("ae01.epochs"), value("max_train_images"), value("bn_momentum")) == (
        "1",
        "100",
        "0.9",
    )
    assert_clean(page)


def test_a_trial_opens_its_detail_and_a_pruned_value_reads_as_pruned(watched):
    from tests.web.factories import make_pruned_study

    page = watched
    run_id = make_pruned_study(prefix="ui-pruned", dataset="demo-ui")
    page.goto(f"/studies/{run_id}")
    pruned_row = page.locator("tr[data-trial='1']")
    assert "pruned at epoch 2" in pruned_row.inner_text()
    page.locator("#fig-intermediate .legendtext").first.wait_for()
    legend = " ".join(page.locator("#fig-intermediate .legendtext").all_text_contents())
    assert "trial 0" in legend and "trial 1 (pruned)" in legend
    marks = page.locator("#fig-intermediate .textpoint").all_text_contents()
    assert "pruned" in marks  # the pruned trial's last value, marked on the plot
    assert page.locator("#trial-detail").is_hidden()

    pruned_row.locator("td").nth(1).click()  # anywhere on the row
    detail = page.locator("#trial-detail")
    detail.wait_for()
    assert page.url.endswith(f"/studies/{run_id}?trial=1#trial-detail")
    text = detail.inner_text()
    assert "Trial #1" in text and "pruned at epoch 2" in text and "not a final value" in text
    assert "kernel_size" in text and "2.5 s" in text
    epochs = detail.locator("tbody tr")
    assert epochs.count() == 2 and "pruned here" in epochs.nth(1).inner_text()
    screenshot(page, "study-trial-detail")

    page.reload()  # the trial is in the URL
    assert "Trial #1" in page.locator("#trial-detail").inner_text()
    page.locator("tr[data-trial='0'] a[data-trial-link]").click()
    assert "Trial #0" in detail.inner_text() and detail.locator("tbody tr").count() == 3
    assert "pruned" not in detail.locator("dd").first.inner_text()
    page.locator("#trial-close").click()
    assert detail.is_hidden() and "trial=" not in page.url
    assert_clean(page)


def test_the_study_name_typed_in_the_tune_form_is_the_studys_name(watched, live):
    import uuid

    page = watched
    name = f"ui sweep {uuid.uuid4().hex[:6]}"
    page.goto("/runs/new?kind=tune")
    form = page.locator("form[data-kind='tune']")
    form.locator("[name='dataset']").select_option("demo-ui")
    form.locator("[name='params.study_name']").fill(name)
    for field, value in {
        "params.n_trials": "1",
        "params.epochs": "1",
        "params.batch_size": "16",
        "params.max_train_images": "100",
        "params.steps_per_epoch": "1",
    }.items():
        form.locator(f"[name='{field}']").fill(value)
    for box in form.locator("[name='params.kernel_sizes']").all()[1:]:
        box.uncheck()
    for box in form.locator("[name='params.optimizers']").all()[1:]:
        box.uncheck()
    assert form.locator("[name='params.study_name']").input_value() == name
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"), timeout=ms(60))
    run = httpx.get(f"{live}/api/runs/{page.url.rsplit('/', 1)[1]}").json()
    assert run["study_name"] == name and run["params"]["study_name"] == name
    page.goto(f"/studies/{run['id']}")
    assert page.locator("h1 .mono").inner_text() == name
    # The run page asks only a kind that evaluates for its confusion matrix: no 404 for a
    # tune that finishes while its page is open.
    assert_clean(page)
