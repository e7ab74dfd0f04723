"""An ablation study's page and JSON on factory-made runs: every factor, the old
augmentation studies, verdicts, per-seed and pooled tests, imbalance-aware metrics."""

from __future__ import annotations

import json

import pytest
from markupsafe import escape

from jobspec import ablations
from tests.api.test_limits import limits
from tests.web.factories import (
    make_ablation,
    make_group,
    make_run,
    make_study_run,
    settle_queue,
)

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
    # k = ceil(10 x 0.25) = 3, ties at the boundary in: checker has as few as diagonal
    assert data["dataset"]["rarest_classes"] == ["dots", "diagonal", "checker"]
    assert "balanced accuracy" in data["verdict"]["text"]
    assert data["pooled"]["about_accuracy"] is True
    arm = data["arms"][1]
    assert set(arm["metrics"]) == set(ablations.STUDY_METRICS)
    assert [r["class"] for r in arm["rare_recall"]] == ["dots", "diagonal", "checker"]
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


# --- Seeds as a count, more seeds from the page, chance level, the next step. ---

SCRATCH = {"encoder": "scratch", "epochs": 1}


def launch_study(client, **body) -> dict:
    body = {"dataset": "demo-tiny", "factor": "augmentation", "params": SCRATCH, **body}
    response = client.post("/api/ablations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def group_seeds(client, group: int) -> list[tuple[int, str]]:
    runs = client.get("/api/runs", params={"group_id": group, "limit": 100}).json()["items"]
    return sorted((r["params"]["seed"], r["params"]["augment"]) for r in runs)


@pytest.fixture
def own_queue():
    """The studies these tests launch are cancelled after each (no worker runs them)."""
    yield
    settle_queue()


def test_a_bare_number_launches_that_many_seeds_and_one_seed_is_refused(client, own_queue):
    group = launch_study(client, seeds="3")["group_id"]
    assert group_seeds(client, group) == [(s, a) for s in range(3) for a in (False, True)]
    assert study_json(client, group)["seeds"] == [0, 1, 2]
    listed = launch_study(client, seeds="1, 2, 7")["group_id"]
    assert sorted({s for s, _ in group_seeds(client, listed)}) == [1, 2, 7]
    default = launch_study(client)["group_id"]
    assert study_json(client, default)["seeds"] == [0, 1, 2, 3, 4]
    body = {"dataset": "demo-tiny", "params": SCRATCH, "seeds": 2}
    old = client.post("/api/augmentation-studies", json=body)
    assert old.status_code == 201 and study_json(client, old.json()["group_id"])["seeds"] == [0, 1]
    for one in ("1", 1, [3], "3,", 0):
        response = client.post(
            "/api/ablations", json={"dataset": "demo-tiny", "factor": "augmentation", "seeds": one}
        )
        assert response.status_code == 422, (one, response.text)
        (error,) = response.json()["detail"]
        assert (
            error["loc"] == ["body", "seeds"]
            and "one seed can never give a verdict" in error["msg"]
        )
    with limits(max_seeds=4):
        refused = client.post(
            "/api/ablations", json={"dataset": "demo-tiny", "factor": "augmentation", "seeds": 5}
        )
    assert refused.status_code == 422 and "STACKLAB_MAX_SEEDS" in refused.json()["detail"][0]["msg"]


def test_add_seeds_repeats_the_study_with_the_next_seeds(client, own_queue):
    created = launch_study(client, seeds="1, 4", split_seed=3, priority=2)
    group = created["group_id"]
    before = client.get("/api/runs", params={"group_id": group}).json()["items"]
    response = client.post(f"/api/groups/{group}/seeds", json={"add": 2})
    assert response.status_code == 201, response.text
    added = response.json()
    assert added["seeds"] == [5, 6] and len(added["run_ids"]) == 4
    runs = client.get("/api/runs", params={"group_id": group, "limit": 100}).json()["items"]
    new = [r for r in runs if r["id"] in added["run_ids"]]
    assert sorted((r["params"]["seed"], r["params"]["augment"]) for r in new) == [
        (5, False),
        (5, True),
        (6, False),
        (6, True),
    ]
    template = before[0]["params"]
    for run in new:  # the same split, shared params and priority; only seed and arm differ
        assert run["params"]["split_seed"] == 3 and run["priority"] == 2
        differ = {k for k in template if template[k] != run["params"][k]}
        assert differ <= {"seed", "augment"}, differ
        arm = "on" if run["params"]["augment"] else "off"
        assert run["tags"] == ["factor:augmentation", f"arm:{arm}", f"seed:{run['params']['seed']}"]
        assert run["group_id"] == group and run["status"] == "queued"
    data = study_json(client, group)
    assert data["seeds"] == [1, 4, 5, 6] and data["running"] is True
    assert data["next"]["add_seeds"]["first_seed"] == 7


def test_add_seeds_is_refused_politely(client, own_queue):
    group = launch_study(client, seeds=2)["group_id"]
    for bad in ({"add": 0}, {"add": -1}, {"add": "2"}, {"add": 1.5}, {}, {"add": 2, "x": 1}):
        response = client.post(f"/api/groups/{group}/seeds", json=bad)
        assert response.status_code == 422, bad
    with limits(max_seeds=3):
        response = client.post(f"/api/groups/{group}/seeds", json={"add": 2})
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "add"] and "STACKLAB_MAX_SEEDS" in error["msg"]
        assert "2 seeds and 2 more would make 4" in error["msg"]
        offer = page_data(client.get(f"/groups/{group}").text)["next"]["add_seeds"]
        assert offer["max"] == 1 and offer["suggested"] == 1 and offer["allowed"]
    with limits(max_seeds=2):  # the page (the JSON's answer is kept by the poll cache)
        html = client.get(f"/groups/{group}").text
        offer = page_data(html)["next"]["add_seeds"]
        assert not offer["allowed"] and "STACKLAB_MAX_SEEDS = 2" in offer["why"]
        assert 'id="add-seeds-form" novalidate hidden' in html and "No more seeds: " in html
    legacy = make_ablation("augmentation", {0: (14, 17), 1: (15, 16)}, legacy=True)
    response = client.post(f"/api/groups/{legacy}/seeds", json={"add": 1})
    assert response.status_code == 422 and "made before ablations" in response.text
    assert not study_json(client, legacy)["next"]["add_seeds"]["allowed"]
    other = make_group("tune_parallel")
    assert client.post(f"/api/groups/{other}/seeds", json={"add": 1}).status_code == 404
    assert client.post("/api/groups/999999/seeds", json={"add": 1}).status_code == 404
    archived = make_ablation("augmentation", {0: (14, 17), 1: (15, 16)})
    ids = [run["id"] for run in study_json(client, archived)["runs"]]
    done = client.post("/api/runs/bulk", json={"action": "archive", "ids": ids})
    assert done.status_code == 200 and done.json()["done"] == len(ids), done.text
    response = client.post(f"/api/groups/{archived}/seeds", json={"add": 1})
    assert response.status_code == 422 and "archived" in response.text


def test_both_arms_at_chance_say_so_and_compute_no_effect_size(client):
    # demo-tiny's test set: 10 classes of 2 images; chance 10%, margin 13.4 points
    group = make_ablation("augmentation", {0: (2, 3), 1: (3, 2), 2: (2, 4)})
    data = study_json(client, group)
    limit = data["chance"]["limit"]
    assert limit["majority"] == pytest.approx(10) and limit["uniform"] == pytest.approx(10)
    assert limit["margin"] == pytest.approx(200 * (0.1 * 0.9 / 20) ** 0.5)
    assert data["chance"]["both"] is True
    assert data["verdict"]["outcome"] == "chance"
    text = data["verdict"]["text"]
    assert text.startswith("Both arms are at chance level: the best test accuracy")
    assert "15.0% (augmentation off) and 20.0% (augmentation on)" in text
    assert "No effect size is computed" in text and "seeds would detect" not in text
    diff = data["difference"]
    assert diff["mde"] is None and diff["seeds_needed"] is None and diff["effect"] is None
    assert study_json(client, group, effect=5)["difference"]["seeds_needed"] is None
    assert data["next"]["primary"] == "new_study"
    html = client.get(f"/groups/{group}").text
    assert 'class="verdict chance"' in html and "Both arms are at chance level" in html
    assert 'id="effect-form" novalidate hidden' in html
    assert page_data(html) == data


def test_one_arm_at_chance_keeps_the_verdict_and_says_which(client):
    group = make_ablation("augmentation", {0: (2, 16), 1: (3, 17), 2: (2, 15)})
    data = study_json(client, group)
    assert data["verdict"]["outcome"] == "helped" and data["chance"]["both"] is False
    assert data["chance"]["arms"]["off"]["at_chance"] is True
    assert "The augmentation off arm is at chance level" in data["verdict"]["text"]
    assert data["difference"]["mde"] is not None


@pytest.mark.parametrize(
    ("right", "running", "primary"),
    [
        ({0: (14, 17), 1: (15, 14), 2: (14, 15)}, None, "add_seeds"),  # inconclusive
        ({0: (12, 16), 1: (13, 16), 2: (12, 17)}, None, "compare"),  # helped
        ({0: (14, 17), 1: (15, 16)}, {1: "on"}, "wait"),  # too few, still training
    ],
)
def test_every_verdict_offers_the_step_it_names(client, right, running, primary):
    group = make_ablation("augmentation", right, running=running)
    data = study_json(client, group)
    step = data["next"]
    assert step["primary"] == primary
    actions = {link["action"]: link for link in step["links"]}
    assert actions["compare"]["href"].startswith("/compare?ids=")
    assert actions["new_study"]["href"] == "/runs/new?kind=ablation"
    if primary == "compare":
        assert actions["compare"]["primary"] and "The answer is in" in step["text"]
    if primary == "add_seeds":
        needed = data["difference"]["seeds_needed"]
        offer = step["add_seeds"]
        assert offer["suggested"] == min(needed - 3, offer["max"]) and offer["max"] == 7
        assert f"About {needed} seeds would detect the effect" in step["text"]
    if primary == "wait":
        assert "1 run still queued or training" in step["text"]
    html = client.get(f"/groups/{group}").text
    assert 'id="add-seeds-form"' in html and ">Add seeds</button>" in html
    assert f'data-primary="{primary}"' in html
