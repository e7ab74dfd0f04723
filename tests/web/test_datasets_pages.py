"""Data set pages, the samples grid, uploads and the worker's side of an import."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from backend.datasets import imports
from store.artifacts.models import Artifact
from store.datasets.models import DatasetImport
from store.db import session_scope
from worker.import_task import import_dataset


def _npz_bytes(n_train: int = 12, n_test: int = 6, classes=("cat", "dog", "eel")) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        y_train=np.arange(n_train) % len(classes),
        x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(n_test) % len(classes),
        class_names=np.array(classes),
    )
    return buffer.getvalue()


def _uploads() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).where(Artifact.kind == imports.UPLOAD_KIND))


def _upload_id(import_id: int) -> int:
    with session_scope() as session:
        return session.get(DatasetImport, import_id).upload_artifact_id


def _upload(client, name, data: bytes, filename: str = "images.npz", **params):
    return client.post(
        "/api/datasets/upload",
        data={"name": name, **params},
        files={"file": (filename, data, "application/octet-stream")},
    )


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def tricky_dataset(client):
    """A data set whose class names are HTML."""
    from worker.datasets import register
    from worker.ml.datasets.dataset import Dataset

    rng = np.random.default_rng(1)
    register(
        Dataset(
            name="tricky",
            x_train=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
            y_train=np.array([0, 1, 0, 1, 0, 1]),
            x_test=rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
            y_test=np.array([0, 1]),
            class_names=("<b>x</b>", "plain"),
            source="test",
        ),
        name="tricky",
    )
    return "tricky"


def test_list_page_shows_data_sets_and_the_import_form(client):
    info = client.get("/api/datasets/demo-tiny").json()
    html = client.get("/datasets").text
    assert 'href="/datasets/demo-tiny"' in html
    assert info["fingerprint"][:12] in html and info["source"] in html
    assert 'id="upload-form"' in html and "Download CIFAR-10" in html
    assert "/static/js/upload.js" in html and "cdn" not in html.lower()


def test_detail_page_has_class_chart_and_labelled_samples(client):
    info = client.get("/api/datasets/demo-tiny").json()
    html = client.get("/datasets/demo-tiny").text
    assert 'id="class-distribution-data"' in html and '"barmode": "group"' in html
    assert "/api/datasets/demo-tiny/samples.png?per_class=8" in html
    for name in info["class_names"]:
        assert f">{name}</li>" in html
    assert client.get("/datasets/no-such-set").status_code == 404


def test_samples_png_has_one_row_per_class(client):
    n_classes = len(client.get("/api/datasets/demo-tiny").json()["class_names"])
    response = client.get("/api/datasets/demo-tiny/samples.png", params={"per_class": 5})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.size == (2 + 5 * 34, 2 + n_classes * 34)
    assert client.get("/api/datasets/demo-tiny/samples.png?per_class=0").status_code == 422
    assert client.get("/api/datasets/nope/samples.png").status_code == 404


def test_class_names_are_escaped(client, tricky_dataset):
    html = client.get(f"/datasets/{tricky_dataset}").text
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<b>x</b>" not in client.get("/datasets").text


@pytest.mark.parametrize("name", ["", "has space", "x" * 101, "../up", "demo-tiny", "é"])
def test_upload_refuses_bad_names_before_storing(client, name):
    before = _uploads()
    response = _upload(client, name, _npz_bytes())
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "name"]
    assert _uploads() == before


def test_upload_refuses_unknown_file_types_and_oversize_files(client, monkeypatch):
    response = _upload(client, _unique("txt"), b"hello", filename="notes.txt")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]
    monkeypatch.setattr(imports, "MAX_UPLOAD_BYTES", 1000)
    assert _upload(client, _unique("big"), b"\0" * 5000).status_code == 413
    assert not list((imports.get_settings().data_dir / "uploads").glob("upload-*"))


def test_npz_upload_is_stored_queued_and_imported_by_the_worker_task(client):
    name = _unique("upl")
    response = client.post(
        f"/api/datasets/upload?name={name}",
        files={"file": ("my images.npz", _npz_bytes(), "application/octet-stream")},
    )
    assert response.status_code == 202, response.text
    import_id = response.json()["import_id"]
    upload_id = _upload_id(import_id)
    with session_scope() as session:
        upload = session.get(Artifact, upload_id)
        assert upload.kind == "upload" and upload.name == f"{name}/my_images.npz"
        assert upload.run_id is None and upload.dataset_id is None
    status = client.get(f"/api/datasets/imports/{import_id}").json()
    assert status["state"] == "pending" and status["detail"] == "queued"
    assert status["name"] == name and status["file"] == "my_images.npz"
    assert _upload(client, name, _npz_bytes()).status_code == 422  # name taken by the import

    assert "imported" in import_dataset(import_id)
    assert import_dataset(import_id) == "nothing to import"  # a redelivery imports nothing

    info = client.get(f"/api/datasets/{name}").json()
    assert info["n_train"] == 12 and info["class_names"] == ["cat", "dog", "eel"]
    with session_scope() as session:
        assert session.get(Artifact, upload_id) is None
    status = client.get(f"/api/datasets/imports/{import_id}", params={"name": name}).json()
    assert status["state"] == "done" and status["dataset_id"] == info["id"]


def test_import_status_answers_by_id_only(client):
    name = _unique("byid")
    import_id = _upload(client, name, _npz_bytes()).json()["import_id"]
    # a data set named demo-tiny exists: that says nothing about this import
    status = client.get(f"/api/datasets/imports/{import_id}").json()
    assert status["state"] == "pending" and status["name"] == name
    assert client.get(f"/api/datasets/imports/{import_id}?name=demo-tiny").status_code == 404
    assert client.get("/api/datasets/imports/987654?name=demo-tiny").status_code == 404
    assert import_dataset(import_id).startswith("imported")


def test_corrupt_zip_leaves_no_data_set_and_an_error_message(client):
    name = _unique("bad")
    response = _upload(client, name, b"PK\x03\x04 this is not really a zip", filename="pics.zip")
    assert response.status_code == 202
    import_id = response.json()["import_id"]
    upload_id = _upload_id(import_id)

    assert import_dataset(import_id).startswith("failed")

    assert client.get(f"/api/datasets/{name}").status_code == 404
    status = client.get(f"/api/datasets/imports/{import_id}", params={"name": name}).json()
    assert status["state"] == "failed" and status["finished_at"]
    assert "pics.zip" in status["message"] and "zip" in status["message"].lower()
    assert "stacklab-import-" not in status["message"]  # no temp paths
    with session_scope() as session:
        assert session.get(Artifact, upload_id) is None
    # a failed import leaves its name free
    assert _upload(client, name, _npz_bytes()).status_code == 202


def test_cifar10_download_is_queued_as_an_import(client):
    response = client.post("/api/datasets/cifar10", json={"name": _unique("cifar")})
    assert response.status_code == 202
    status = client.get(f"/api/datasets/imports/{response.json()['import_id']}").json()
    assert status["state"] == "pending"
    assert client.post("/api/datasets/cifar10", json={"name": "bad name"}).status_code == 422
    assert client.get("/api/datasets/imports/999999").status_code == 404


def test_thousands_of_classes_keep_the_samples_grid_and_page_small(client):
    """A data set stored with 5,000 classes (before the class limit) once grew the web by
    1.26 GB for its samples grid: now the grid shows the first 100 classes."""
    import tracemalloc

    from worker.datasets import register
    from worker.ml.datasets.dataset import Dataset

    n = 5000
    rng = np.random.default_rng(2)
    name = _unique("many")
    register(
        Dataset(
            name=name,
            x_train=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            y_train=np.arange(n),
            x_test=rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
            y_test=np.array([0, 1]),
            class_names=tuple(f"c{i}" for i in range(n)),
            source="test",
        ),
        name=name,
    )
    tracemalloc.start()
    try:
        html = client.get(f"/datasets/{name}").text
        response = client.get(f"/api/datasets/{name}/samples.png", params={"per_class": 32})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "showing 100 of 5000 classes" in html
    assert ">c99</li>" in html and ">c100</li>" not in html
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (2 + 32 * 34, 2 + 100 * 34)
    assert np.asarray(image)[2:34, 2:34].tolist() != [[[226, 230, 236]] * 32] * 32  # a tile
    # The old grid: a 170,000-pixel-tall canvas (556 MB at 32 a class), every image loaded.
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB"
