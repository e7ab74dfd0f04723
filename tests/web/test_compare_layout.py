"""The compare page's layout: the parameters that differ first (and only those, by default),
near the top; runs that differ by one parameter and the seed grouped with mean ± sd."""

from __future__ import annotations

import re

import pytest

from tests.web.factories import finetune_result, make_ablation, make_run

ACCURACIES = {
    (False, 0): 0.70,
    (False, 1): 0.74,
    (False, 2): 0.72,
    (True, 0): 0.80,
    (True, 1): 0.84,
}


def _result(accuracy: float) -> dict:
    result = finetune_result()
    result["evaluation"]["accuracy"] = accuracy
    return result


@pytest.fixture(scope="module")
def sweep(client):
    """augment off over seeds 0-2, on over seeds 0-1: one parameter and the seed differ."""
    return {
        key: make_run(
            "finetune",
            name=f"augment {key[0]} seed {key[1]}",
            params={"augment": key[0], "seed": key[1]},
            metrics={"finetune/val_accuracy": [0.5, accuracy - 0.05]},
            result=_result(accuracy),
        )
        for key, accuracy in ACCURACIES.items()
    }


def ids(runs) -> str:
    return ",".join(str(r) for r in runs)


def test_differing_parameters_come_first_with_the_seed_last_among_them(client, sweep):
    data = client.get(f"/api/compare?ids={ids(sweep.values())}").json()
    keys = [row["key"] for row in data["params"]]
    differing = [row["key"] for row in data["params"] if row["differs"]]
    assert keys[: len(differing)] == differing == ["augment", "seed"]
    assert all(not row["differs"] for row in data["params"][len(differing) :])


def test_the_page_shows_the_parameter_diff_near_the_top_with_only_differences_on(client, sweep):
    page = client.get(f"/compare?ids={ids(sweep.values())}").text
    order = [page.index(f'id="{card}"') for card in ("params-card", "groups-card", "metrics-card")]
    assert order == sorted(order) and page.index('id="params-card"') < page.index('id="curves"')
    assert re.search(r'<input type="checkbox" id="only-diff"\s+checked>', page)
    rows = re.findall(r'<tr class="(diff|same)[^"]*"\s*(hidden)?>', page)
    assert rows[:2] == [("diff", ""), ("diff", "")]  # shown, first
    assert rows[2:] and all(row == ("same", "hidden") for row in rows[2:])  # hidden for now
    assert "2 of" in page and "differ, shown first" in page


def test_runs_sharing_all_but_one_parameter_and_the_seed_are_grouped_with_mean_and_sd(
    client, sweep
):
    data = client.get(f"/api/compare?ids={ids(sweep.values())}").json()
    groups = data["groups"]
    assert groups["by"] == ["augment"]
    assert [(g["label"], g["n"], g["seeds"]) for g in groups["groups"]] == [
        ("augment = false", 3, [0, 1, 2]),
        ("augment = true", 2, [0, 1]),
    ]
    assert groups["note"] == "mean ± sd over each group's seeds (n in each cell)"
    accuracy = next(row for row in groups["rows"] if row["key"] == "accuracy")
    off, on = accuracy["cells"]["0"], accuracy["cells"]["1"]
    assert off["mean"] == pytest.approx(0.72) and off["sd"] == pytest.approx(0.02)  # ddof=1
    assert on["mean"] == pytest.approx(0.82) and on["sd"] == pytest.approx(0.028284, abs=1e-6)
    assert off["n"] == 3 and on["n"] == 2
    assert accuracy["best_group"] == "1" and accuracy["percent"] is True
    kept = next(row for row in groups["rows"] if row["key"] == "finetune/val_accuracy")
    assert kept["cells"]["0"]["mean"] == pytest.approx(0.67)


def test_a_study_is_grouped_by_its_arms_saying_over_how_many_seeds(client):
    group = make_ablation("augmentation", {0: (10, 14), 1: (11, 15), 2: (12, 13)})
    runs = client.get("/api/runs", params={"limit": 500}).json()["items"]
    study = [r["id"] for r in runs if r["group_id"] == group]
    data = client.get(f"/api/compare?ids={ids(sorted(study))}").json()
    groups = data["groups"]
    assert groups["note"] == "mean ± sd over 3 seeds"
    assert groups["by"] == ["arm"] and [g["n"] for g in groups["groups"]] == [3, 3]
    assert [g["label"] for g in groups["groups"]] == ["arm = off", "arm = on"]
    accuracy = next(row for row in groups["rows"] if row["key"] == "accuracy")
    means = sorted(cell["mean"] for cell in accuracy["cells"].values())
    assert means == pytest.approx([11 / 20, 14 / 20])  # 10, 11, 12 and 14, 15, 13 right of 20


def test_runs_that_share_their_seed_or_differ_everywhere_are_not_grouped(client, sweep):
    same_seed = [sweep[(False, 0)], sweep[(True, 0)]]
    assert client.get(f"/api/compare?ids={ids(same_seed)}").json()["groups"] is None
    other = make_run("finetune", params={"seed": 5, "optimizer": "sgd", "augment": True})
    pair = [sweep[(False, 1)], other]  # seed, optimizer and augment differ: nothing repeats
    assert client.get(f"/api/compare?ids={ids(pair)}").json()["groups"] is None
    page = client.get(f"/compare?ids={ids(pair)}").text
    assert 'id="groups-card" hidden' in page
