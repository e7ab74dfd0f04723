"""Compare page, with its JSON, on factory-made runs (study pages: test_ablation_page.py)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.compare import router as compare_router
from store.db import session_scope
from store.runs.models import Run
from tests.web.factories import finetune_result, make_run


@pytest.fixture(scope="module")
def client(app_env):
    """The app with the compare JSON API (added here until backend/main.py includes it)."""
    from fastapi.testclient import TestClient

    from backend.main import create_app

    app = create_app()
    if not any(getattr(route, "path", "") == "/api/compare" for route in app.routes):
        app.include_router(compare_router.router, prefix="/api")
    with TestClient(app) as test_client:
        yield test_client


def _result(matrix: list[list[int]], accuracy: float) -> dict:
    result = finetune_result(["cat", "dog"])
    result["evaluation"].update(
        confusion_matrix=matrix, accuracy=accuracy, balanced_accuracy=accuracy - 0.01
    )
    return result


@pytest.fixture(scope="module")
def pair(client):
    a = make_run(
        "finetune",
        name="<b>baseline</b>",
        params={"optimizer": "adam", "early_stopping": {"patience": 3}},
        metrics={"finetune/val_accuracy": [0.5, 0.7, 0.6], "finetune/val_loss": [1.0, 0.8, 0.9]},
        result=_result([[8, 2], [4, 6]], 0.70),
    )
    b = make_run(
        "finetune",
        name="sgd",
        params={"optimizer": "sgd", "early_stopping": {"patience": 3}},
        metrics={"finetune/val_accuracy": [0.6, 0.8], "finetune/val_loss": [0.9, 0.7]},
        result=_result([[7, 3], [1, 9]], 0.80),
    )
    return a, b


def test_compare_flags_differing_params(client, pair):
    a, b = pair
    data = client.get(f"/api/compare?ids={a},{b}").json()
    rows = {row["key"]: row for row in data["params"]}
    assert rows["optimizer"]["differs"] is True
    assert rows["optimizer"]["values"] == {str(a): "adam", str(b): "sgd"}
    assert rows["early_stopping.patience"]["differs"] is False
    assert rows["batch_size"]["differs"] is False


def test_compare_metrics_table_has_final_best_and_best_epoch(client, pair):
    a, b = pair
    data = client.get(f"/api/compare?ids={a},{b}").json()
    rows = {row["key"]: row for row in data["metrics"]}
    cell = rows["finetune/val_accuracy"]["cells"][str(a)]
    assert (cell["final"], cell["best"], cell["best_epoch"]) == (0.6, 0.7, 2)
    assert rows["finetune/val_accuracy"]["best_run"] == str(b)
    assert rows["finetune/val_loss"]["best_run"] == str(b)
    tests = {row["key"]: row for row in data["tests"]}
    assert tests["accuracy"]["cells"][str(b)]["value"] == pytest.approx(0.80)
    assert tests["balanced_accuracy"]["cells"][str(a)]["value"] == pytest.approx(0.69)
    assert [c["metric"] for c in data["curves"]] == ["val_accuracy", "val_loss"]
    assert len(data["curves"][0]["figure"]["data"]) == 2


def test_compare_confusion_difference_names_recall_changes(client, pair):
    a, b = pair
    diff = client.get(f"/api/compare?ids={a},{b}").json()["confusion"]["differences"][0]
    assert diff["matrix"] == [[-1, 1], [-3, 3]]
    by_class = {s["class"]: s for s in diff["sentences"]}
    assert by_class["cat"]["verb"] == "lost" and by_class["cat"]["change"] == pytest.approx(-10)
    assert by_class["dog"]["verb"] == "gained" and by_class["dog"]["change"] == pytest.approx(30)
    assert "80.0% → 70.0%" in by_class["cat"]["text"]


def test_compare_refuses_fewer_than_two_and_unknown_ids(client, pair):
    a, _ = pair
    assert client.get(f"/api/compare?ids={a}").status_code == 422
    assert client.get(f"/api/compare?ids={a},999999").status_code == 404
    page = client.get(f"/compare?ids={a}")
    assert "pick at least two runs" in page.text
    missing = client.get(f"/compare?ids={a},999999")
    assert missing.status_code == 404 and "999999 not found" in missing.text
    assert client.get("/compare").status_code == 200


def test_compare_page_escapes_run_names(client, pair):
    a, b = pair
    page = client.get(f"/compare?ids={a},{b}")
    assert page.status_code == 200
    assert "&lt;b&gt;baseline&lt;/b&gt;" in page.text
    assert "<b>baseline</b>" not in page.text.replace("\\u003cb\\u003e", "")
    assert 'tr class="diff"' in page.text and "/vendor/plotly.min.js" in page.text


def test_compare_links_reconstructions_of_pretrain_runs(client, pair):
    a, _ = pair
    pretrain = make_run("pretrain", artifacts={"reconstructions.png": b"\x89PNG"})
    data = client.get(f"/api/compare?ids={a},{pretrain}").json()
    urls = {run["id"]: run["reconstructions"] for run in data["runs"]}
    assert urls == {a: None, pretrain: f"/api/runs/{pretrain}/reconstructions.png"}


def test_confusion_heatmaps_of_many_classes_stay_small(client):
    names = [f"class-{i}" for i in range(1000)]
    rng = np.random.default_rng(0)
    matrices = []
    for _ in range(2):
        matrix = (np.eye(1000, dtype=int) * 5).tolist()
        for i, j in rng.integers(0, 1000, size=(300, 2)):
            matrix[int(i)][int(j)] += 1
        matrices.append(matrix)
    matrices[1][7][3] += 50  # the class that changed most must be among those shown
    results = [_result(m, 0.5) for m in matrices]
    for result in results:
        result["evaluation"]["class_names"] = names
    a, b = (make_run("finetune", result=result) for result in results)
    for run in (a, b):
        with session_scope() as session:
            evaluation = session.get(Run, run).result["evaluation"]
            assert len(evaluation["confusion_matrix"]) == 1000
    api = client.get(f"/api/runs/{a}/confusion")
    heatmap = api.json()["figure"]["data"][0]
    assert len(heatmap["x"]) == len(heatmap["z"]) == 40 and "texttemplate" not in heatmap
    assert "40 of 1,000 classes" in api.text
    compare = client.get(f"/api/compare?ids={a},{b}")
    diff = compare.json()["confusion"]["differences"][0]
    assert (
        "class-7" in diff["figure"]["data"][0]["y"] and "class-3" in diff["figure"]["data"][0]["x"]
    )
    assert diff["matrix"] is None and len(diff["sentences"]) <= 40
    page = client.get(f"/compare?ids={a},{b}")
    # the run results hold two million cells; what reaches a browser is a small part of it
    assert len(api.content) < 100_000 and len(compare.content) < 1_000_000, (
        len(api.content),
        len(compare.content),
    )
    listed = client.get("/api/runs?kind=finetune&limit=500")
    items = {item["id"]: item for item in listed.json()["items"]}
    assert "confusion_matrix" not in items[a]["result"]["evaluation"]
    assert len(client.get(f"/api/runs/{a}").json()["result"]["evaluation"]["class_names"]) == 1000
    print("many classes:", len(api.content), len(compare.content), len(page.content))
    assert page.status_code == 200 and len(page.content) < 1_000_000
