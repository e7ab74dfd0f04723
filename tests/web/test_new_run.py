"""The new-run form: one tab per kind, generated from the job parameter models."""

from __future__ import annotations

import re
from typing import Any

import pytest
from markupsafe import escape

from backend.runs import form
from jobspec import ablations
from tests.web.factories import make_run


@pytest.mark.parametrize("kind", form.FORM_KINDS)
def test_every_kind_renders_with_defaults(client, kind):
    page = client.get(f"/runs/new?kind={kind}")
    assert page.status_code == 200
    html = page.text
    assert f'data-kind="{kind}" novalidate >' in html  # the chosen tab is the visible one
    for other in form.FORM_KINDS:
        assert f'<form class="card run-form" data-kind="{other}"' in html
    assert 'value="0.99"' in html  # bn_momentum's default, with its help text
    assert "BatchNorm moving-average momentum" in html
    assert '<option value="demo-tiny"' in html


def test_nested_models_are_fieldsets_and_enums_selects(client):
    html = client.get("/runs/new?kind=pretrain").text
    for stage in ("ae01", "ae02", "ae03"):
        assert f'<fieldset data-field="params.{stage}">' in html
    select = re.search(r'<select id="pretrain-params.ae01.kernel_size".*?</select>', html, re.S)
    assert select and '<option value="3" selected>' in select.group(0)
    assert '<option value="7"' in select.group(0)
    html = client.get("/runs/new?kind=finetune").text
    assert '<fieldset data-field="params.early_stopping">' in html
    assert '<fieldset data-field="params.augmentation">' in html
    assert 'name="params.augmentation.horizontal_flip" data-type="boolean" checked' in html
    assert 'id="finetune-parent"' in html and "from scratch" in html
    assert 'id="tune-parallel"' in html


def test_ablation_tab_offers_every_factor_metric_and_split(client):
    names = {f["path"] for f in form.build_fields("ablation")}
    assert "params.seed" not in names and "params.split_seed" not in names
    assert {"params.augment", "params.class_weights", "params.early_stopping"} <= names
    html = client.get("/runs/new?kind=ablation").text
    assert 'data-kind="ablation" novalidate >' in html and "Ablation study" in html
    for factor in ablations.FACTORS.values():
        assert f'<option value="{factor.name}" data-question="{escape(factor.question)}"' in html
    for metric in ablations.STUDY_METRICS:
        assert f'<option value="{metric}">' in html
    assert '<option value="" data-auto>auto</option>' in html
    for field in ("factor", "metric", "seeds", "split_seed", "parent_run_id"):
        assert f'data-field="{field}"' in html
    assert '<option value="per_seed">' in html and 'id="ablation-split-seed"' in html
    assert 'data-sets="params.augment"' in html  # hidden while augmentation is the factor
    assert 'id="ablation-parent"' in html


def test_auto_metric_says_what_it_picks_for_each_data_set(client):
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    register(make_demo(seed=0, n_train=60, n_test=20, imbalance=0.2), name="tiny-skewed")
    html = client.get("/runs/new?kind=ablation").text
    study = html[html.index('data-kind="ablation" novalidate') :]
    assert re.search(r'<option value="demo-tiny"\s+data-default-metric="accuracy"', study)
    assert re.search(
        # imbalanced training classes, a balanced test set: "auto" is accuracy there
        r'<option value="tiny-skewed"\s+data-default-metric="accuracy"',
        study,
    )


def test_the_forms_study_body_is_accepted_and_its_errors_name_its_fields(client):
    body = {
        "dataset": "demo-tiny",
        "name": None,
        "params": {"encoder": "scratch", "epochs": 1, "batch_size": 8},
        "parent_run_id": None,
        "seeds": [0, 1],
        "factor": "class_weights",
        "metric": None,
        "split_seed": None,
    }
    created = client.post("/api/ablations", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["url"] == f"/groups/{created.json()['group_id']}"
    html = client.get("/runs/new?kind=ablation").text
    for bad, field in (({"factor": "nope"}, "factor"), ({"split_seed": "x"}, "split_seed")):
        response = client.post("/api/ablations", json={**body, **bad})
        assert response.status_code == 422
        loc = response.json()["detail"][0]["loc"]
        assert loc[:2] == ["body", field] and f'data-field="{field}"' in html


def test_clone_prefills_the_source_runs_params_and_escapes_its_name(client):
    source = make_run(
        "pretrain", name="<script>alert(1)</script>", params={"ae02": {"epochs": 7}}, tags=["x&y"]
    )
    html = client.get(f"/runs/new?clone={source}").text
    assert 'data-kind="pretrain" novalidate >' in html
    assert re.search(r'id="pretrain-params.ae02.epochs"[^>]*value="7"', html)
    assert re.search(r'id="pretrain-params.ae01.epochs"[^>]*value="10"', html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; (clone)" in html
    assert "<script>alert(1)</script>" not in html
    assert 'value="x&amp;y"' in html


def test_parent_lists_pretrain_runs_and_preselects_the_given_one(client):
    done = make_run("pretrain", name="weights <ok>")
    make_run("pretrain", "failed", name="broken pretrain")
    html = client.get(f"/runs/new?parent={done}").text
    assert 'data-kind="finetune" novalidate >' in html
    assert re.search(
        rf'<option value="{done}" selected data-dataset="demo-tiny">'
        rf"#{done} weights &lt;ok&gt; · succeeded</option>",
        html,
    )
    assert "broken pretrain" not in html


def test_a_422_location_names_a_field_of_the_form(client):
    response = client.post(
        "/api/runs",
        json={"kind": "pretrain", "dataset": "demo-tiny", "params": {"ae01": {"kernel_size": 4}}},
    )
    assert response.status_code == 422
    loc = response.json()["detail"][0]["loc"]
    assert loc == ["body", "params", "ae01", "kernel_size"]
    html = client.get("/runs/new?kind=pretrain").text
    assert f'data-field="{".".join(loc[1:])}"' in html


def test_unknown_clone_is_404(client):
    assert client.get("/runs/new?clone=999999").status_code == 404


def _presets_of(html: str, kind: str) -> dict[str, Any]:
    """The preset buttons of one kind's form: name -> {pressed, sets}."""
    import json
    from html import unescape

    start = html.index(f'data-kind="{kind}" novalidate')
    end = html.find("<form ", start)
    part = html[start : end if end > 0 else len(html)]
    found = re.findall(
        r"data-preset=\"(\w+)\" data-sets='([^']*)'.*?aria-pressed=\"(true|false)\"", part, re.S
    )
    state = re.search(r"data-preset-state>([^<]*)<", part)
    return {
        "state": unescape(state.group(1)) if state else None,
        **{n: {"sets": json.loads(unescape(s)), "pressed": p == "true"} for n, s, p in found},
    }


@pytest.mark.parametrize("kind", form.FORM_KINDS)
def test_every_form_offers_the_presets_with_the_defaults_pressed(client, kind):
    from jobspec import presets

    shown = _presets_of(client.get(f"/runs/new?kind={kind}").text, kind)
    assert [n for n in shown if n != "state"] == [p.value for p in presets.PresetName]
    assert shown["seed"]["pressed"] and not shown["quick"]["pressed"]
    assert shown["state"] == "Seed's settings"
    source = form.preset_kind(kind)
    for name in presets.PresetName:
        sets = {k.removeprefix("params."): v for k, v in shown[name]["sets"].items()}
        assert sets == presets.values(source, name)
    html = client.get(f"/runs/new?kind={kind}").text
    for path in shown["quick"]["sets"]:  # every field a preset sets is a field of the form
        assert f'name="{path}"' in html, path


def test_a_clone_of_a_quick_run_shows_quick_look_and_a_study_review_custom(client):
    from jobspec import presets

    quick = presets.values("finetune", presets.PresetName.QUICK)
    params = {"epochs": 4, "batch_size": 32, "bn_momentum": 0.9, "max_train_images": 1500}
    assert all(quick[k] == v for k, v in params.items())
    source = make_run("finetune", params=params)
    shown = _presets_of(client.get(f"/runs/new?clone={source}").text, "finetune")
    assert shown["quick"]["pressed"] and shown["state"] == "Quick look"

    from tests.web.factories import make_tune_study

    tune = make_tune_study(
        {
            "stage": "ae01",
            "epochs": 1,
            "batch_size": 16,
            "bn_momentum": 0.9,
            "max_train_images": 100,
        },
        [(3, "adam", 0.2), (5, "sgd", 0.1)],
    )
    html = client.get(f"/studies/{tune}/pretrain").text
    shown = _presets_of(html, "pretrain")
    assert not any(shown[p.value]["pressed"] for p in presets.PresetName)
    assert shown["state"] == "custom" and "Custom values (the study&#39;s)" in html
    # the study's values stay in the fields: no preset overwrote them
    assert re.search(r'id="pretrain-params.ae01.epochs"[^>]*value="1"', html)
    assert re.search(r'id="pretrain-params.max_train_images"[^>]*value="100"', html)
