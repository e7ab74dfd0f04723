"""Looking at a finetune's errors: one confusion cell's test images with their predicted
probabilities, each class's most confident mistakes, and the test images as thumbnails."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.web.factories import demo_test_labels, make_run, npz_bytes
from tests.web.report_factories import confidence, known_predictions, make_finetune


@pytest.fixture(scope="module")
def finetune(client):
    return make_finetune(None, name="errors-finetune")


def test_a_cell_lists_its_images_most_confident_first(client, finetune):
    y = demo_test_labels()
    predicted, probabilities = known_predictions()
    wrong = [i for i in range(len(y)) if i % 2 == 1]
    true = int(y[wrong[0]])
    pred = (true + 1) % 10
    expected = sorted((i for i in wrong if y[i] == true), reverse=True)  # by confidence
    response = client.get(f"/api/runs/{finetune}/errors", params={"true": true, "pred": pred})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["true"]["index"] == true and data["pred"]["index"] == pred
    assert data["total"] == len(expected) and data["dataset"] == "demo-tiny"
    assert [item["index"] for item in data["items"]] == expected
    for item in data["items"]:
        i = item["index"]
        assert item["true"] == true and item["predicted"] == pred
        assert item["p_predicted"] == pytest.approx(probabilities[i, pred])
        assert item["p_predicted"] == pytest.approx(confidence(i, 20))
        assert item["p_true"] == pytest.approx(0.1)
        assert item["top"][0] == {
            "class": pred,
            "name": data["pred"]["name"],
            "p": item["p_predicted"],
        }
    limited = client.get(
        f"/api/runs/{finetune}/errors", params={"true": true, "pred": pred, "limit": 1}
    ).json()
    assert [item["index"] for item in limited["items"]] == expected[:1]
    assert limited["total"] == len(expected)


def test_the_diagonal_lists_the_images_it_got_right(client, finetune):
    y = demo_test_labels()
    true = int(y[0])
    right = [i for i in range(len(y)) if i % 2 == 0 and y[i] == true]
    data = client.get(f"/api/runs/{finetune}/errors", params={"true": true, "pred": true}).json()
    assert sorted(item["index"] for item in data["items"]) == right
    assert all(item["p_predicted"] == pytest.approx(0.9) for item in data["items"])


def test_most_confident_mistakes_per_class(client, finetune):
    y = demo_test_labels()
    data = client.get(f"/api/runs/{finetune}/mistakes", params={"per_class": 2}).json()
    assert [c["index"] for c in data["classes"]] == list(range(10))
    for entry in data["classes"]:
        wrong = sorted(
            (i for i in range(len(y)) if i % 2 == 1 and y[i] == entry["index"]), reverse=True
        )
        assert entry["errors"] == len(wrong)
        assert [item["index"] for item in entry["items"]] == wrong[:2]
        assert all(item["predicted"] != item["true"] for item in entry["items"])


def test_errors_bounds_and_missing_files(client, finetune):
    url = f"/api/runs/{finetune}/errors"
    assert client.get(url, params={"true": 10, "pred": 0}).status_code == 422
    [error] = client.get(url, params={"true": 0, "pred": 99}).json()["detail"]
    assert error["loc"][-1] == "pred"
    assert client.get(url, params={"true": -1, "pred": 0}).status_code == 422
    assert client.get(url, params={"true": 0, "pred": 0, "limit": 201}).status_code == 422
    assert client.get(url, params={"true": 0}).status_code == 422
    no_files = make_run("finetune", name="no-predictions")
    assert (
        client.get(f"/api/runs/{no_files}/errors", params={"true": 0, "pred": 0}).status_code == 404
    )
    assert client.get(f"/api/runs/{no_files}/mistakes").status_code == 404
    assert client.get("/api/runs/987654/mistakes").status_code == 404


def test_predictions_of_another_length_are_refused(client):
    short = make_run("finetune", artifacts={"predictions.npz": npz_bytes(predictions=np.zeros(3))})
    assert client.get(f"/api/runs/{short}/mistakes").status_code == 404


def test_older_predictions_without_probabilities_still_list_images(client):
    y = demo_test_labels()
    predicted = (y + 1) % 10
    run_id = make_run("finetune", artifacts={"predictions.npz": npz_bytes(predictions=predicted)})
    data = client.get(
        f"/api/runs/{run_id}/errors", params={"true": int(y[0]), "pred": int(predicted[0])}
    ).json()
    assert data["has_probabilities"] is False and data["items"][0]["p_predicted"] is None
    assert sorted(i["index"] for i in data["items"]) == [i for i in range(20) if y[i] == y[0]]


def test_a_test_image_as_png_thumbnail(client):
    from PIL import Image

    from worker.ml.datasets.demo import make_demo

    x_test = make_demo(seed=0, n_train=60, n_test=20).x_test
    response = client.get("/api/datasets/demo-tiny/test-images/7.png", params={"scale": 2})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "max-age=3600" and response.headers["etag"]
    image = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    assert image.shape == (64, 64, 3)
    assert np.array_equal(image[::2, ::2], x_test[7])
    for bad in ("20", "-1", "99999999999"):
        assert client.get(f"/api/datasets/demo-tiny/test-images/{bad}.png").status_code == 404
    assert client.get("/api/datasets/demo-tiny/test-images/1.png?scale=9").status_code == 422
    assert client.get("/api/datasets/nope/test-images/1.png").status_code == 404
