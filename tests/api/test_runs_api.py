"""The JSON API over a real database: launching, refusing, reading, 404s."""

from __future__ import annotations

import subprocess
import sys

from tests.stack import REPO_ROOT

PRETRAIN = {"ae01": {"epochs": 1}, "ae02": {"epochs": 1}, "ae03": {"epochs": 1}}


def test_health(client):
    assert client.get("/api/health").json() == {"status": "ok"}


def test_launch_queues_a_run_and_reads_it_back(client):
    response = client.post(
        "/api/runs",
        json={"kind": "pretrain", "dataset": "demo-tiny", "params": PRETRAIN, "tags": ["smoke"]},
    )
    assert response.status_code == 201, response.text
    run = response.json()[0]
    assert run["status"] == "queued" and run["tags"] == ["smoke"]
    assert run["params"]["ae01"]["kernel_size"] == 3  # defaults filled in
    assert client.get(f"/api/runs/{run['id']}").json()["id"] == run["id"]
    page = client.get("/api/runs", params={"kind": "pretrain"}).json()
    assert run["id"] in [r["id"] for r in page["items"]] and page["total"] >= 1


def test_bad_parameters_get_422_naming_the_field_and_queue_nothing(client):
    before = client.get("/api/runs").json()["total"]
    cases = [
        (
            {"kind": "pretrain", "dataset": "demo-tiny", "params": {"ae01": {"kernel_size": 4}}},
            ["body", "params", "ae01", "kernel_size"],
        ),
        (
            {"kind": "finetune", "dataset": "demo-tiny", "params": {"encoder": "stacked"}},
            ["body", "parent_run_id"],
        ),
        ({"kind": "pretrain", "dataset": "nope"}, ["body", "dataset"]),
        ({"kind": "jump", "dataset": "demo-tiny"}, ["body", "kind"]),
        ({"kind": "tune", "dataset": "demo-tiny", "parallel": 0}, ["body", "parallel"]),
    ]
    for body, loc in cases:
        response = client.post("/api/runs", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == loc
    assert client.get("/api/runs").json()["total"] == before


def test_cancel_a_queued_run_and_requeue_it(client):
    run = client.post(
        "/api/runs", json={"kind": "pretrain", "dataset": "demo-tiny", "params": PRETRAIN}
    ).json()[0]
    cancelled = client.post(f"/api/runs/{run['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 422
    assert client.post(f"/api/runs/{run['id']}/requeue").json()["status"] == "queued"


def test_clone_with_edits(client):
    run = client.post(
        "/api/runs", json={"kind": "pretrain", "dataset": "demo-tiny", "params": PRETRAIN}
    ).json()[0]
    clone = client.post(
        f"/api/runs/{run['id']}/clone", json={"params": {"ae02": {"kernel_size": 5}}}
    )
    assert clone.status_code == 201, clone.text
    assert clone.json()["params"]["ae02"]["kernel_size"] == 5
    assert clone.json()["params"]["ae01"]["epochs"] == 1
    bad = client.post(f"/api/runs/{run['id']}/clone", json={"params": {"ae02": {"epochs": -1}}})
    assert bad.status_code == 422


def test_augmentation_study_queues_off_and_on_per_seed(client):
    response = client.post(
        "/api/augmentation-studies",
        json={
            "dataset": "demo-tiny",
            "params": {"encoder": "scratch", "epochs": 1},
            "seeds": [0, 1],
        },
    )
    assert response.status_code == 201, response.text
    group = response.json()["group_id"]
    runs = client.get("/api/runs", params={"group_id": group}).json()["items"]
    assert sorted((r["seed"], r["params"]["augment"]) for r in runs) == [
        (0, False),
        (0, True),
        (1, False),
        (1, True),
    ]


def test_unknown_ids_are_404(client):
    assert client.get("/api/runs/999999").status_code == 404
    assert client.post("/api/runs/999999/cancel").status_code == 404
    assert client.get("/api/runs/999999/metrics").status_code == 404
    assert client.get("/api/datasets/nope").status_code == 404


def test_datasets_and_workers_are_listed(client):
    names = [d["name"] for d in client.get("/api/datasets").json()]
    assert "demo-tiny" in names
    assert client.get("/api/datasets/demo-tiny").json()["train_counts"]["circle"] > 0
    assert isinstance(client.get("/api/workers").json(), list)


def test_the_web_process_never_imports_tensorflow_or_keras(tmp_path):
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from backend.main import create_app\n"
        "with TestClient(create_app()) as c:\n"
        "    assert c.get('/api/health').status_code == 200\n"
        "    c.get('/api/runs')\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'worker', 'jax', 'torch') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={
            "STACKLAB_DATA_DIR": str(tmp_path),
            "STACKLAB_ALLOWED_HOSTS": "testserver",  # TestClient's Host
            "PATH": "/usr/bin:/bin",
        },
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_both_run_lists_take_the_same_filters(client):
    tagged = client.post(
        "/api/runs",
        json={"kind": "pretrain", "dataset": "demo-tiny", "params": PRETRAIN, "tags": ["filt"]},
    ).json()[0]
    query = {"tag": "filt", "dataset": "demo-tiny", "kind": "pretrain", "q": "PRETRAIN"}
    listed = client.get("/api/runs", params=query).json()
    table = client.get("/api/runs/table", params=query).json()
    assert [r["id"] for r in listed["items"]] == [r["id"] for r in table["items"]] == [tagged["id"]]
    assert client.get("/api/runs", params={"tag": "t" * 201}).status_code == 422
