"""The new-run form: one tab per kind, generated from the job parameter models."""

from __future__ import annotations

import re

import pytest

from backend.runs import form
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


def test_augmentation_tab_sets_augment_and_seed_itself(client):
    names = {f["path"] for f in form.build_fields("augmentation")}
    assert "params.augment" not in names and "params.seed" not in names
    assert "params.augmentation" in names
    assert 'id="augmentation-seeds"' in client.get("/runs/new?kind=augmentation").text


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
    assert (
        f'<option value="{done}" selected>#{done} weights &lt;ok&gt; · succeeded</option>' in html
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
