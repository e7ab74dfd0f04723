"""Lists stay small whatever a row holds (issue 19, item 4): a data set stored before class
names were capped (1,000 names of 60,000 characters, 180 MB of JSON, written straight in
SQL) is listed by GET /api/datasets, the data sets page, /runs/new, /runs and /welcome in
bounded memory; one data set's page and endpoint are capped too; on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import json
import sys
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, text

from backend import plotting
from backend.datasets import listing
from backend.datasets.schemas import DatasetRead
from backend.runs import detail
from store.datasets import service as datasets_service
from store.datasets.models import DatasetRecord
from store.db import session_scope
from tests.web.downloads import Download, peak_of
from tests.web.factories import make_run, npz_bytes

N_CLASSES, NAME_CHARS = 1000, 60_000
BOUND = 16 * 2**20  # what listing the data sets may hold at its peak (Python allocations)


def store_raw(name: str, names_json: str, train_json: str, test_json: str) -> None:
    """A data set row as written by hand in SQL (no check on the way in)."""
    with session_scope() as session:
        pg = session.get_bind().dialect.name == "postgresql"

        def value(param: str) -> str:
            return f"CAST(:{param} AS JSON)" if pg else f":{param}"

        session.execute(
            text(
                "INSERT INTO datasets (name, source, fingerprint, n_train, n_test, image_shape,"
                " class_names, train_counts, test_counts, created_at) VALUES (:name, 'test',"
                f" :fingerprint, 1000, 10, {value('shape')}, {value('names')}, {value('train')},"
                f" {value('test')}, :created)"
            ),
            {
                "name": name,
                "fingerprint": uuid.uuid4().hex,
                "shape": "[32, 32, 3]",
                "names": names_json,
                "train": train_json,
                "test": test_json,
                "created": datetime.now(UTC),
            },
        )


def long_names() -> list[str]:
    return [f"{i:04d}" + "x" * (NAME_CHARS - 4) for i in range(N_CLASSES)]


@pytest.fixture(scope="module")
def huge(client):
    name = f"huge-{uuid.uuid4().hex[:6]}"
    names = long_names()
    store_raw(
        name,
        json.dumps(names),
        json.dumps({n: 10 + i % 3 for i, n in enumerate(names)}),
        json.dumps({n: 1 for n in names}),
    )
    del names
    yield name
    with session_scope() as session:
        session.execute(delete(DatasetRecord).where(DatasetRecord.name == name))


def rss_growth(work) -> int:
    """How far the process's resident memory rose above where it was while `work()` ran
    (Linux: the high-water mark, reset first). SQLite's own memory counts too."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _status("VmRSS:")
    work()
    return _status("VmHWM:") - before


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field))


def test_a_row_too_long_to_read_has_its_classes_counted(client, monkeypatch):
    # Before the tests that store the 60 MB row (`huge`): a 3-byte scan reads every row.
    name = f"odd-{uuid.uuid4().hex[:6]}"
    names = ['a"b', "c\\", "\\", 'e\\"f', "g,h", "caf\u00e9", "z"]
    store_raw(name, json.dumps(names), json.dumps(dict.fromkeys(names, 2)), "{}")
    monkeypatch.setattr(listing, "LIST_TEXT", 20)  # a prefix of a few names only
    monkeypatch.setattr(listing, "SCAN_BYTES", 3)  # escapes cut between pieces
    item = next(d for d in client.get("/api/datasets").json() if d["name"] == name)
    assert item["n_classes"] == len(names)
    assert 0 < len(item["class_names"]) < len(names)
    assert item["class_names"] == names[: len(item["class_names"])]
    assert item["classes_left_out"] == len(names) - len(item["class_names"])
    with session_scope() as session:
        session.execute(delete(DatasetRecord).where(DatasetRecord.name == name))


def test_the_data_set_list_is_small_and_says_what_it_left_out(client, huge, app_env):
    answer = Download(client.app, "/api/datasets")
    peak = peak_of(answer)
    print(f"GET /api/datasets: {answer.size:,} bytes, peak {peak / 2**20:.1f} MB")
    assert answer.status == 200 and answer.size < 64 * 1024
    assert peak < BOUND
    if "DATABASE_URL" not in app_env and sys.platform == "linux":  # SQLite runs in process
        grew = rss_growth(Download(client.app, "/api/datasets"))
        assert grew < 64 * 2**20, f"RSS +{grew / 2**20:.0f} MB"  # 180 MB were read before
    listed = {d["name"]: d for d in client.get("/api/datasets").json()}
    item = listed[huge]
    assert item["n_classes"] == N_CLASSES
    assert 0 < len(item["class_names"]) <= listing.LIST_CLASSES
    assert item["classes_left_out"] == N_CLASSES - len(item["class_names"])
    first = item["class_names"][0]
    assert first.startswith("0000xxx") and "60,000 characters" in first and len(first) < 130
    assert item["train_counts"][first] == 10 and item["test_counts"][first] == 1
    assert set(item["train_counts"]) <= set(item["class_names"])
    assert item["imbalanced"] is False  # 10 to 12 images a class
    tiny = listed["demo-tiny"]  # a data set within the caps lists as it always did
    assert tiny["classes_left_out"] == 0 and tiny["n_classes"] == len(tiny["class_names"])


def test_one_data_set_shows_its_names_up_to_the_cap(client, huge):
    answer = Download(client.app, f"/api/datasets/{huge}")
    peak = peak_of(answer)
    assert answer.status == 200 and answer.size < 256 * 1024 and peak < BOUND
    one = client.get(f"/api/datasets/{huge}").json()
    assert one["n_classes"] == N_CLASSES and one["classes_left_out"] > 0
    assert all(len(n) < 130 for n in one["class_names"])
    page = client.get(f"/datasets/{huge}")
    assert page.status_code == 200 and len(page.content) < 512 * 1024
    assert f"of {N_CLASSES} classes" in page.text and 'id="classes-note"' in page.text
    for path in ("test-images/0.png", "samples.png"):  # the row has no arrays: 404, small
        image = Download(client.app, f"/api/datasets/{huge}/{path}")
        assert peak_of(image) < BOUND and image.status == 404, path


@pytest.mark.parametrize("path", ["/datasets", "/runs/new", "/runs", "/welcome"])
def test_every_page_listing_data_sets_stays_small(client, huge, path):
    answer = Download(client.app, path)
    peak = peak_of(answer)
    assert answer.status == 200, path
    assert answer.size < 512 * 1024 and peak < BOUND, (path, answer.size, peak)


def test_a_normal_data_set_reads_as_its_whole_record(client):
    with session_scope() as session:
        record = datasets_service.get_by_name(session, "demo-tiny")
        whole = DatasetRead.model_validate(record)
        assert listing.one(session, "demo-tiny") == whole
        assert listing.by_id(session, record.id) == whole
        listed = next(d for d in listing.page(session) if d.name == "demo-tiny")
    assert listed == whole  # fewer than LIST_CLASSES classes: nothing left out


def test_the_list_pages_through_many_data_sets(client):
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    for i in range(5):
        store_raw(f"{prefix}-{i}", '["a", "b"]', '{"a": 1, "b": 9}', '{"a": 1, "b": 1}')
    answer = client.get("/api/datasets", params={"limit": 2, "offset": 0})
    total = int(answer.headers["x-total-count"])
    assert total >= 6 and len(answer.json()) == 2
    seen = []
    for offset in range(0, total, 2):
        seen += [d["name"] for d in client.get(f"/api/datasets?limit=2&offset={offset}").json()]
    assert seen == sorted(seen) and len(seen) == total
    assert [n for n in seen if n.startswith(prefix)] == [f"{prefix}-{i}" for i in range(5)]
    mine = next(d for d in client.get("/api/datasets?limit=200").json() if d["name"] == seen[-1])
    assert mine["imbalanced"] is True  # 9 to 1
    assert client.get("/api/datasets", params={"limit": 201}).status_code == 422
    with session_scope() as session:
        session.execute(delete(DatasetRecord).where(DatasetRecord.name.like(f"{prefix}-%")))


# --- Reading a cut JSON column leniently ------------------------------------------------


def test_a_cut_json_column_gives_the_items_it_holds_whole():
    names = ["a", 'quo"te', "caf\u00e9", "long" * 10]
    full = json.dumps(names)
    for cut in range(len(full)):
        got = listing._strings(full[:cut])
        assert got == names[: len(got)]  # never a part of a name
    assert listing._strings(full) == names
    counts = {"a": 1, "b": 22, "c\u00e9": 333}
    full = json.dumps(counts)
    for cut in range(len(full)):
        got = listing._counts(full[:cut])
        assert got == dict(list(counts.items())[: len(got)])  # never a number cut short
    assert listing._strings('{"not": "a list"}') == [] and listing._counts("[1, 2]") == {}


# --- A 1,000-class run's errors explorer ---------------------------------------------


@pytest.fixture(scope="module")
def thousand(client):
    """A finetune on a 1,000-class data set (names within the caps), one test image a
    class: each class c predicted as (c + 1) on c % 7 == 0, otherwise right."""
    import numpy as np

    from worker.datasets import register
    from worker.ml.datasets.dataset import Dataset

    n = N_CLASSES
    rng = np.random.default_rng(5)
    name = f"k-{uuid.uuid4().hex[:6]}"
    y = np.arange(n)
    register(
        Dataset(
            name=name,
            x_train=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            y_train=y,
            x_test=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            y_test=y,
            class_names=tuple(f"k{i}" for i in range(n)),
            source="test",
        ),
        name=name,
    )
    predicted = np.where(y % 7 == 0, (y + 1) % n, y)
    probabilities = np.full((n, n), 0.1 / n, dtype=np.float32)
    probabilities[y, predicted] = 0.9
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (y, predicted), 1)
    names = [f"k{i}" for i in range(n)]
    evaluation = {
        "accuracy": float((y == predicted).mean()),
        "balanced_accuracy": float((y == predicted).mean()),
        "confusion_matrix": matrix.tolist(),
        "class_names": names,
        "per_class": {k: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1} for k in names},
    }
    run_id = make_run(
        "finetune",
        dataset=name,
        artifacts={
            "predictions.npz": npz_bytes(predictions=predicted, probabilities=probabilities)
        },
        result={"evaluation": evaluation},
    )
    return {"run": run_id, "matrix": matrix.tolist()}


def test_a_1000_class_explorer_sends_a_page_of_classes_and_says_so(client, thousand):
    run_id = thousand["run"]
    answer = client.get(f"/api/runs/{run_id}/confusion")
    assert answer.status_code == 200 and len(answer.content) < 256 * 1024
    data = answer.json()
    assert data["per_class_total"] == N_CLASSES and list(data["per_class"])[:2] == ["k0", "k1"]
    assert len(data["per_class"]) == detail.PER_CLASS_ROWS
    assert len(data["shown"]) == plotting.MAX_HEATMAP_CLASSES
    later = client.get(f"/api/runs/{run_id}/confusion", params={"per_class_offset": 950}).json()
    assert list(later["per_class"]) == [f"k{i}" for i in range(950, 1000)]
    assert client.get(f"/api/runs/{run_id}/confusion?per_class_limit=1001").status_code == 422
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    table = page.text.split('<tbody id="per-class">')[1].split("</tbody>")[0]
    assert table.count("<tr>") == detail.PER_CLASS_ROWS
    assert f"of {N_CLASSES} classes." in page.text and 'id="per-class-more"' in page.text


def test_a_1000_class_explorer_picks_the_heatmap_classes_without_the_matrix(client, thousand):
    run_id = thousand["run"]
    answer = client.get(f"/api/runs/{run_id}/mistakes", params={"per_class": 3})
    assert answer.status_code == 200 and len(answer.content) < 512 * 1024
    data = answer.json()
    expected = plotting.heatmap_classes([thousand["matrix"]])  # from the whole matrix
    assert [c["index"] for c in data["classes"]] == expected
    assert expected == sorted(expected) and len(expected) == plotting.MAX_HEATMAP_CLASSES
    assert data["classes"][0]["items"][0]["predicted"] == expected[0] + 1
    assert data["class_names"][999] == "k999"
    cell = client.get(f"/api/runs/{run_id}/errors", params={"true": 7, "pred": 8}).json()
    assert cell["total"] == 1 and cell["pred"]["name"] == "k8"
