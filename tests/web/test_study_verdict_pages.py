"""Issue 23 on the study page, its JSON and the experiment report: per-image tests apart from
the verdict with their sentence, the resolution floor, the test-set bootstrap and what the
verdict covers, n = 2 said plainly, the pre-registered metric, Holm over an experiment's
studies, and one verdict vocabulary sent from the server."""

from __future__ import annotations

import json
import math
import re
from html import unescape

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from jobspec import verdicts
from jobspec.verdicts import Verdict
from tests.web.factories import demo_test_labels, make_ablation, study_predictions
from tests.web.report_factories import adopt, make_pretrain


def study_json(client, group: int) -> dict:
    response = client.get(f"/api/groups/{group}/ablation")
    assert response.status_code == 200, response.text
    return response.json()


def by_id(html: str, element_id: str) -> str:
    """The text of the element with that id (no nested element of the same tag)."""
    found = re.search(rf'<(\w+)[^>]*id="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert found, element_id
    return unescape(re.sub(r"<[^>]+>", "", found.group(2))).strip()


def test_per_image_tests_stand_apart_and_each_says_it_does_not_test_the_factor(client):
    # +15, -5, +5 points: inconclusive over seeds, yet the images lean one way.
    group = make_ablation("encoder", {0: (14, 17), 1: (15, 14), 2: (14, 15)})
    data = study_json(client, group)
    assert data["verdict"]["outcome"] == Verdict.INCONCLUSIVE
    pooled = data["pooled"]
    for name in ("mcnemar", "seed_cmh"):
        assert pooled[name]["not_the_factor"].startswith("Not a test of the factor")
        assert pooled[name]["tests"]
    assert pooled["mcnemar"]["stratified_by"] == "seed and image"
    assert pooled["seed_cmh"]["stratified_by"] == "seed" and pooled["seed_cmh"]["strata"] == 3
    # seed CMH by hand: per seed, baseline right a_k of 20, E_k = 20·(a_k + t_k) / 40
    right = [(14, 17), (15, 14), (14, 15)]
    excess = sum(a - (a + t) / 2 for a, t in right)
    variance = sum(20 * 20 * (a + t) * (40 - a - t) / (40**2 * 39) for a, t in right)
    assert pooled["seed_cmh"]["chi2"] == pytest.approx(excess**2 / variance)
    html = client.get(f"/groups/{group}").text
    section = html.split('id="image-tests"')[1].split("</section>")[0]
    assert "not the factor" in section and image_tests_sentence() in unescape(section)
    assert "one stratum per seed)" not in data["pooled"]["rule"]
    verdict_card = html.split('id="verdict"')[1].split("</section>")[0]
    assert "McNemar" not in verdict_card and "p &lt; 0.001" not in verdict_card


def image_tests_sentence() -> str:
    from backend.compare.image_tests import NOT_THE_FACTOR

    return NOT_THE_FACTOR


def test_seeds_that_all_agree_use_the_test_sets_resolution_not_a_zero_width_interval(client):
    # +20 points on each of 2 seeds of a 20-image test set (steps of 5 points).
    group = make_ablation("augmentation", {0: (12, 16), 1: (13, 17)})
    diff = study_json(client, group)["difference"]
    assert diff["sd"] == 0.0 and diff["floored"] and diff["resolution"] == pytest.approx(5.0)
    half = scipy_stats.t.ppf(0.975, 1) * 5.0 / math.sqrt(2)
    assert diff["low"] == pytest.approx(20 - half) and diff["high"] == pytest.approx(20 + half)
    assert diff["outcome"] == Verdict.INCONCLUSIVE and diff["t_test"]["p"] > 0.05
    text = study_json(client, group)["verdict"]["text"]
    assert "resolution" in text and "Two seeds show little" in text


def test_the_test_set_bootstrap_sits_beside_the_seed_interval(client):
    right = {0: (12, 16), 1: (13, 16), 2: (12, 17)}
    group = make_ablation("augmentation", right)
    data = study_json(client, group)
    boot = data["test_set"]
    assert boot["available"] and boot["replicates"] == 1000
    # Analytic spread: per image, D_i = mean over seeds of (treatment right − baseline right)
    y = demo_test_labels()
    rows = [
        (study_predictions(t) == y).astype(float) - (study_predictions(b) == y)
        for b, t in right.values()
    ]
    per_image = 100 * np.mean(rows, axis=0)
    assert boot["sd"] == pytest.approx(per_image.std() / math.sqrt(y.size), rel=0.1)
    assert boot["low"] < data["difference"]["mean"] < boot["high"]
    assert boot["combined_low"] < data["difference"]["low"]  # both sources: wider
    text = data["verdict"]["text"]
    assert "training randomness across seeds" in text and "one fixed split" in text
    assert "Test-set sampling alone" in text and data["scope"] in text


def test_the_metric_is_shown_as_pre_registered_and_the_others_as_exploratory(client):
    group = make_ablation("augmentation", {0: (12, 16), 1: (13, 16), 2: (12, 17)})
    data = study_json(client, group)
    registration = data["registration"]
    assert registration["pre_registered"] and registration["metric"] == "accuracy"
    assert set(registration["exploratory"]) == {"balanced_accuracy", "macro_f1", "minority_recall"}
    html = client.get(f"/groups/{group}").text
    assert by_id(html, "registration") == registration["how"]
    assert by_id(html, "exploratory") == registration["note"]
    assert data["scope"] in by_id(html, "verdict")  # what the interval covers: in the verdict


def test_the_verdict_vocabulary_comes_from_the_server(client):
    group = make_ablation("augmentation", {0: (12, 16), 1: (13, 16)})
    data = study_json(client, group)
    assert data["verdicts"] == verdicts.vocabulary()
    assert data["verdicts"]["names"]["TOO_FEW"] == Verdict.TOO_FEW
    assert data["verdicts"]["words"][Verdict.CHANCE] == "at chance"


def test_an_experiments_studies_get_holms_adjustment(client):
    pretrain = make_pretrain("holm-pretrain")
    studies = {
        "augmentation": {0: (12, 16), 1: (13, 16), 2: (12, 17)},  # helped
        "class_weights": {0: (14, 17), 1: (15, 14), 2: (14, 15)},  # inconclusive
        "freeze_encoder": {0: (16, 12), 1: (17, 12), 2: (15, 12)},  # hurt
    }
    groups = {}
    for factor, right in studies.items():
        groups[factor] = make_ablation(factor, right, name=f"holm {factor}")
        adopt(groups[factor], pretrain)
    report = client.get(f"/api/experiments/{pretrain}").json()
    found = {s["group"]["id"]: s for s in report["studies"]}
    p = [study_json(client, g)["difference"]["t_test"]["p"] for g in groups.values()]
    reference = multipletests(p, method="holm")[1]
    for group, expected in zip(groups.values(), reference, strict=True):
        assert found[group]["p_holm"] == pytest.approx(expected)
        outcome = found[group]["verdict"]["outcome"]
        assert found[group]["survives"] == (outcome in Verdict.answers() and expected < 0.05)
    note = report["multiplicity"]
    assert note["compared"] == 3 and note["method"] == "holm"
    assert "3 studies" in note["text"] and "exploratory" in note["text"]
    html = client.get(f"/experiments/{pretrain}").text
    assert by_id(html, "multiple-comparisons") == f"Multiple comparisons: {note['text']}"
    assert "pre-registered" in html
    exported = client.get(f"/experiments/{pretrain}/report.html").text
    assert "Holm-adjusted" in exported and note["text"] in unescape(exported)


def test_page_json_is_strict_and_carries_the_new_fields(client):
    group = make_ablation("pretraining", {0: (14, 17), 1: (15, 14)})
    html = client.get(f"/groups/{group}").text
    raw = html.split('<script type="application/json" id="study-data">')[1].split("</script>")[0]
    embedded = json.loads(raw)
    assert embedded == study_json(client, group)
    for key in ("test_set", "scope", "registration", "verdicts"):
        assert key in embedded
    assert embedded["difference"]["seeds_range"] is not None


def test_a_seed_without_stored_predictions_leaves_the_bootstrap_out_and_says_why(client):
    from sqlalchemy import update

    from backend import conditional
    from store.artifacts.models import Artifact
    from store.db import session_scope

    group = make_ablation("augmentation", {0: (12, 16), 1: (13, 16), 2: (12, 17)})
    first = study_json(client, group)["pairs"][0]["baseline"]["id"]
    with session_scope() as session:
        session.execute(
            update(Artifact)
            .where(Artifact.run_id == first, Artifact.name == "predictions.npz")
            .values(name="predictions-moved.npz")
        )
    conditional.VALIDATORS.forget()  # a moved file changes no run: the answer was cached
    conditional.ANSWERS.forget()
    data = study_json(client, group)
    assert data["test_set"] == {
        "available": False,
        "why": "some seeds have no stored test predictions",
    }
    assert data["pairs"][0]["mcnemar"] is None and data["pairs"][0]["problem"]
    assert data["pooled"]["mcnemar"]["strata"] == 2  # the other seeds still pooled
    assert "Test-set sampling is not counted" in data["verdict"]["text"]
    json.dumps(data, allow_nan=False)
