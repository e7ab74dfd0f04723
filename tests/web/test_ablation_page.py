"""An ablation study's page and JSON on factory-made runs: every factor, the old
augmentation studies, verdicts, per-seed and pooled tests, imbalance-aware metrics."""

from __future__ import annotations

import json

import pytest
from markupsafe import escape

from jobspec import ablations
from tests.web.factories import make_ablation, make_group, make_run, make_study_run

IMBALANCED = "demo-tiny-imbalanced"


@pytest.fixture(scope="module")
def imbalanced(client):
    """demo-tiny's test set with imbalanced training classes (2 to 12 images)."""
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    register(make_demo(seed=0, n_train=60, n_test=20, imbalance=0.2), name=IMBALANCED)
    return IMBALANCED


def study_json(client, group: int, **query) -> dict:
    response = client.get(f"/api/groups/{group}/ablation", params=query)
    assert response.status_code == 200, response.text
    return response.json()


def _refuse(constant: str):
    raise ValueError(f"{constant} is not JSON")


def page_data(html: str) -> dict:
    """The study JSON the page embeds for its script (JSON.parse knows no Infinity/NaN)."""
    raw = html.split('<script type="application/json" id="study-data">')[1]
    return json.loads(raw.split("</script>")[0], parse_constant=_refuse)


@pytest.mark.parametrize("factor", list(ablations.FACTORS))
def test_every_factor_names_its_question_arms_and_metric(client, factor):
    spec = ablations.factor(factor)
    group = make_ablation(factor, {0: (12, 16), 1: (13, 16), 2: (12, 17)}, name=f"<b>{factor}</b>")
    data = study_json(client, group)
    assert data["factor"]["name"] == factor and data["factor"]["question"] == spec.question
    assert [a["label"] for a in data["arms"]] == [spec.baseline.label, spec.treatment.label]
    assert [a["role"] for a in data["arms"]] == ["baseline", "treatment"]
    assert data["verdict"]["outcome"] == "helped"
    assert data["verdict"]["text"].startswith(f"{spec.subject} helped: +")
    assert "test accuracy" in data["verdict"]["text"]
    html = client.get(f"/groups/{group}").text
    assert escape(spec.question) in html and f"&lt;b&gt;{factor}&lt;/b&gt;" in html
    assert f"<b>{factor}</b>" not in html.replace("\\u003cb\\u003e", "")
    assert escape(spec.baseline.label) in html and escape(spec.treatment.label) in html
    assert 'class="verdict helped"' in html and "/static/js/ablation.js" in html
    if spec.note:
        assert 'id="note"' in html


@pytest.mark.parametrize(
    ("right", "outcome"),
    [
        ({0: (16, 12), 1: (17, 12), 2: (15, 12)}, "hurt"),  # d = -20, -25, -15 points
        ({0: (12, 16), 1: (12, 17), 2: (12, 15)}, "helped"),
        ({0: (14, 17), 1: (15, 14), 2: (14, 15)}, "inconclusive"),  # +15, -5, +5
        ({0: (12, 16), 1: (13, 17), 2: (11, 15)}, "helped"),  # +20 each: no spread
    ],
)
def test_verdict_reads_the_ci_of_the_paired_seed_differences(client, right, outcome):
    group = make_ablation("pretraining", right)
    data = study_json(client, group)
    assert page_data(client.get(f"/groups/{group}").text) == data  # strict JSON for the page
    diffs = [(t - b) * 5.0 for b, t in right.values()]
    assert [p["difference"] for p in data["pairs"]] == pytest.approx(diffs)
    assert data["difference"]["mean"] == pytest.approx(sum(diffs) / 3)
    assert data["verdict"]["outcome"] == outcome
    assert data["difference"]["n"] == 3 and data["difference"]["mde"] >= 0
    assert "seeds would detect an effect of" in data["verdict"]["text"]
    assert "95% CI" in data["verdict"]["text"] and "n = 3 seeds" in data["verdict"]["text"]
    if outcome == "inconclusive":
        assert data["verdict"]["text"].startswith("Inconclusive whether pretraining helped")


def test_old_augmentation_study_reads_as_augmentation_judged_by_accuracy(client):
    group = make_ablation("augmentation", {0: (14, 17), 1: (15, 16)}, legacy=True)
    data = study_json(client, group)
    assert client.get(f"/api/groups/{group}/augmentation").json() == data
    assert data["group"]["kind"] == "augmentation_study"
    assert data["factor"]["name"] == "augmentation" and data["metric"]["name"] == "accuracy"
    assert data["difference"]["mean"] == pytest.approx(10.0)  # +15 and +5 points
    assert data["difference"]["low"] == pytest.approx(10 - 12.7062 * 5, abs=0.01)
    assert data["difference"]["t_test"]["p"] == pytest.approx(0.2952, abs=1e-3)
    assert data["verdict"]["outcome"] == "inconclusive"
    assert [r["arm"] for r in data["runs"]] == ["off", "on", "off", "on"]
    assert data["arms"][0]["metrics"]["accuracy"]["mean"] == pytest.approx(72.5)
    assert data["split_seed"] == "unknown" and data["warnings"] == []
    assert "before ablations" in data["metric"]["why"]
    page = client.get(f"/groups/{group}")
    assert page.status_code == 200 and "Does data augmentation help?" in page.text


def test_per_seed_mcnemar_and_the_pooled_tests(client):
    group = make_ablation("encoder", {0: (14, 17), 1: (15, 16), 2: (16, 15)})
    data = study_json(client, group)
    seed0 = data["pairs"][0]
    assert seed0["mcnemar"]["only_a"] == 0 and seed0["mcnemar"]["only_b"] == 3
    assert seed0["mcnemar"]["p_exact"] == pytest.approx(0.25)
    cmh = data["pooled"]["mcnemar"]
    # only the treatment right: 3 + 1 images; only the baseline: 1 (seed 2)
    assert (cmh["only_baseline"], cmh["only_treatment"], cmh["strata"]) == (1, 4, 3)
    assert cmh["chi2"] == pytest.approx(9 / 5) and cmh["chi2_corrected"] == pytest.approx(4 / 5)
    flip = data["pooled"]["sign_flip"]
    assert flip["exact"] and flip["patterns"] == 8 and flip["p_min"] == pytest.approx(0.25)
    # sums of ±15 ±5 ±5 at least as far from 0 as the observed 15: 25, 15, 15 and mirrors
    assert flip["p"] == pytest.approx(6 / 8)
    assert data["pooled"]["about_accuracy"] is False
    assert "not a test of the factor" in data["mcnemar_caveat"]
    html = client.get(f"/groups/{group}").text
    assert "whether these two networks differ on this test set" in html
    assert "Cochran–Mantel–Haenszel" in html


def test_asking_for_another_effect_sizes_the_seed_count(client):
    group = make_ablation("augmentation", {0: (14, 17), 1: (15, 14), 2: (14, 15)})
    default = study_json(client, group)["difference"]
    assert default["effect"] == pytest.approx(5.0) and default["effect_asked"] is False
    small = study_json(client, group, effect=1)["difference"]
    large = study_json(client, group, effect=50)["difference"]
    assert small["effect_asked"] and small["effect"] == 1.0
    assert small["seeds_needed"] is None or small["seeds_needed"] > default["seeds_needed"]
    assert large["seeds_needed"] < default["seeds_needed"]
    assert client.get(f"/api/groups/{group}/ablation", params={"effect": 0}).status_code == 422
    for bad in ("x", "nan", "inf", "-1", "101"):
        response = client.get(f"/api/groups/{group}/ablation", params={"effect": bad})
        assert response.status_code == 422, bad


def test_a_study_still_training_is_too_few_and_running(client):
    group = make_ablation("class_weights", {0: (14, 17), 1: (15, 16)}, running={1: "on"})
    data = study_json(client, group)
    assert data["running"] is True and data["counts"] == {"running": 1, "succeeded": 3}
    assert data["verdict"]["outcome"] == "too_few" and "1 of 2" in data["verdict"]["text"]
    assert data["difference"]["t_test"] is None and data["difference"]["mde"] is None
    assert len(data["pairs"]) == 1 and data["pooled"]["mcnemar"]["strata"] == 1


def test_imbalanced_data_judged_by_balanced_accuracy_with_the_rarest_classes(client, imbalanced):
    group = make_ablation(
        "class_weights",
        {0: (12, 16), 1: (13, 16)},
        metric="balanced_accuracy",
        dataset=imbalanced,
        group_params={"metric_chosen": False},
    )
    data = study_json(client, group)
    assert data["metric"] == {
        "name": "balanced_accuracy",
        "label": "balanced accuracy",
        "chosen": False,
        "why": "picked automatically: the training classes are imbalanced",
    }
    assert data["dataset"]["imbalanced"] is True
    assert data["dataset"]["rarest_classes"] == ["dots", "diagonal"]
    assert "balanced accuracy" in data["verdict"]["text"]
    assert data["pooled"]["about_accuracy"] is True
    arm = data["arms"][1]
    assert set(arm["metrics"]) == set(ablations.STUDY_METRICS)
    assert [r["class"] for r in arm["rare_recall"]] == ["dots", "diagonal"]
    assert all(r["n"] == 2 for r in arm["rare_recall"])
    assert "not the study" in data["pooled"]["rule"]


def test_page_shows_split_parent_and_warnings_escaped(client):
    parent = make_run("pretrain", name="weights <i>v1</i>")
    group = make_ablation(
        "freeze_encoder",
        {0: (14, 17), 1: (15, 16)},
        group_params={
            "split_seed": 7,
            "parent_run_id": parent,
            "warnings": ["Pretrain split <b>differs</b>"],
        },
    )
    data = study_json(client, group)
    assert data["parent"]["id"] == parent and data["split_seed"] == 7
    html = client.get(f"/groups/{group}").text
    assert f'<a href="/runs/{parent}">#{parent} weights &lt;i&gt;v1&lt;/i&gt;</a>' in html
    assert "7, one train/validation split for every seed" in html
    assert "Pretrain split &lt;b&gt;differs&lt;/b&gt;" in html


def test_curves_band_each_arm_and_add_balanced_accuracy_when_logged(client):
    group = make_ablation("augmentation", {0: (14, 17)})
    assert [c["metric"] for c in study_json(client, group)["curves"]] == [
        "val_accuracy",
        "val_loss",
    ]
    make_study_run(
        group,
        arm="on",
        seed=1,
        n_right=15,
        metrics={"finetune/val_balanced_accuracy": [0.3, 0.4], "finetune/val_loss": [2.0, 1.5]},
    )
    curves = {c["metric"]: c["figure"] for c in study_json(client, group)["curves"]}
    assert list(curves) == ["val_accuracy", "val_balanced_accuracy", "val_loss"]
    names = [trace["name"] for trace in curves["val_accuracy"]["data"]]
    assert names == [
        "augmentation off: min–max over seeds",
        "augmentation off: mean",
        "augmentation on: min–max over seeds",
        "augmentation on: mean",
    ]


def test_other_groups_list_their_runs_and_unknown_groups_are_404(client):
    group = make_group("tune_parallel", name="<u>tune</u> group")
    make_run("tune", group_id=group)
    page = client.get(f"/groups/{group}")
    assert page.status_code == 200 and "&lt;u&gt;tune&lt;/u&gt; group" in page.text
    assert client.get(f"/api/groups/{group}/ablation").status_code == 404
    assert client.get("/api/groups/999999/ablation").status_code == 404
    assert client.get(f"/api/groups/{2**70}/ablation").status_code == 404
    assert client.get("/api/groups/999999/augmentation").status_code == 404
    assert client.get("/groups/999999").status_code == 404
