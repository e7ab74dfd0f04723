"""GET /metrics: Prometheus's text format, parsed back with prometheus_client's parser,
with the documented series and the right numbers for the rows each test writes (counts
are compared before and after: the module's database is shared); behind the token unless
STACKLAB_METRICS_PUBLIC opens it. On SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from backend.main import create_app
from backend.runs import liveness
from jobspec import kinds
from jobspec.status import ImportState, RunStatus
from store import clock
from store.datasets.models import DatasetImport
from store.db import session_scope
from store.runs.models import MetricSummary, Run
from store.settings import get_settings
from store.workers import service as workers_service
from tests.ops.helpers import finish, running_run

TOKEN = "metrics-token-1"
DOCUMENTED = {
    "stacklab_store_up",
    "stacklab_runs",
    "stacklab_queue_depth",
    "stacklab_queue_oldest_wait_seconds",
    "stacklab_workers_online",
    "stacklab_workers_busy",
    "stacklab_workers_silent",
    "stacklab_epoch_duration_seconds",
    "stacklab_images_per_second",
    "stacklab_imports",
    "stacklab_import_duration_seconds",
    "stacklab_webhook_deliveries",
    "stacklab_http_request_duration_seconds",
}

Samples = dict[tuple[str, frozenset], float]


@pytest.fixture(scope="module")
def web(app_env):
    with TestClient(create_app()) as client:
        yield client


def scrape(client: TestClient, **headers: str) -> tuple[set[str], Samples]:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    names, samples = set(), {}
    for family in text_string_to_metric_families(answer.text):
        names.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def dataset_id() -> int:
    from store.datasets.models import DatasetRecord

    with session_scope() as session:
        return session.query(DatasetRecord.id).filter_by(name="demo-tiny").scalar()


def test_metrics_has_every_documented_series(web):
    names, samples = scrape(web)
    assert names >= DOCUMENTED
    assert value(samples, "stacklab_store_up") == 1
    for kind in kinds.names():  # every state of every kind, zeros included
        for status in RunStatus:
            assert (
                "stacklab_runs",
                frozenset({"state": status.value, "kind": kind}.items()),
            ) in samples


def test_runs_by_state_and_kind_and_the_queue_count_this_tests_rows(web):
    _, before = scrape(web)
    data = dataset_id()
    queued = running_run(data)  # claimed, then given back to the queue below
    with session_scope() as session:
        session.execute(
            update(Run)
            .where(Run.id == queued)
            .values(status=RunStatus.QUEUED, queued_at=clock.now(session) - timedelta(hours=2))
        )
    finish(running_run(data), RunStatus.SUCCEEDED)
    running_run(data)
    _, after = scrape(web)
    for state, added in (("queued", 1), ("running", 1), ("succeeded", 1), ("failed", 0)):
        labels = {"state": state, "kind": "pretrain"}
        assert (
            value(after, "stacklab_runs", **labels) - value(before, "stacklab_runs", **labels)
            == added
        ), state
    assert value(after, "stacklab_queue_depth") - value(before, "stacklab_queue_depth") == 1
    assert 7200 <= value(after, "stacklab_queue_oldest_wait_seconds") < 7200 + 600


def test_workers_online_busy_and_silent_by_the_pages_rule(web):
    _, before = scrape(web)
    tag = uuid.uuid4().hex[:8]
    run_id = running_run(dataset_id())
    with session_scope() as session:
        for name, current in (
            (f"busy-{tag}", run_id),
            (f"idle-{tag}", None),
            (f"gone-{tag}", None),
        ):
            workers_service.report(
                session=session, name=name, host="h", device="CPU", current_run_id=current
            )
    with session_scope() as session:
        from store.workers.models import WorkerRecord

        quiet = clock.now(session) - timedelta(seconds=liveness.silent_after() + 5)
        session.execute(
            update(WorkerRecord).where(WorkerRecord.name == f"gone-{tag}").values(last_seen=quiet)
        )
    _, after = scrape(web)
    for state, added in (("online", 2), ("busy", 1), ("silent", 1)):
        name = f"stacklab_workers_{state}"
        got = value(after, name, lane="training") - value(before, name, lane="training")
        assert got == added, state


def test_epoch_time_and_images_per_second_by_model_and_device(web):
    device = f"TestGPU-{uuid.uuid4().hex[:8]}"
    run_id = running_run(dataset_id())
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(device=device))
        for key, last in (("ae01/epoch_seconds", 12.5), ("ae01/images_per_sec", 400.0)):
            session.add(
                MetricSummary(
                    run_id=run_id,
                    key=key,
                    last_value=last,
                    last_step=3,
                    best_value=last,
                    best_step=3,
                    goal="min",
                )
            )
    job = kinds.get("pretrain")
    model = job.rate_model(job.config({}), "ae01")
    labels = {"kind": "pretrain", "model": model, "device": device}
    _, samples = scrape(web)
    assert value(samples, "stacklab_epoch_duration_seconds", **labels) == 12.5
    assert value(samples, "stacklab_images_per_second", **labels) == 400.0


def test_import_counts_and_durations(web):
    _, before = scrape(web)
    with session_scope() as session:
        now = clock.now(session)
        session.add(
            DatasetImport(
                name=f"imp-{uuid.uuid4().hex[:8]}",
                file_name="x.npz",
                state=ImportState.DONE,
                created_at=now,
                started_at=now - timedelta(seconds=4242),
                finished_at=now,
            )
        )
    _, after = scrape(web)
    assert (
        value(after, "stacklab_imports", state="done")
        - value(before, "stacklab_imports", state="done")
        == 1
    )
    assert value(after, "stacklab_import_duration_seconds", quantile="1") >= 4242


def test_request_latency_is_labelled_by_route_template_never_the_raw_path(web):
    key = ("stacklab_http_request_duration_seconds_count",)
    _, before = scrape(web)
    for run_id in (987654321, 987654322):
        web.get(f"/api/runs/{run_id}")
    web.get(f"/no-such-page-{uuid.uuid4().hex}")
    answer = web.get("/metrics").text
    assert "987654321" not in answer and "no-such-page" not in answer
    _, after = scrape(web)
    labels = {"method": "GET", "route": "/api/runs/{run_id}", "status": "404"}
    assert value(after, *key, **labels) - value(before, *key, **labels) == 2
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, *key, **unmatched) - value(before, *key, **unmatched) >= 1


def test_a_poll_answered_before_routing_is_labelled_by_the_route_it_asked_for(web):
    key = "stacklab_http_request_duration_seconds_count"
    for _ in range(5):  # the queue's validator moves on every 30 s slot: try a new one then
        first = web.get("/api/queue")
        _, before = scrape(web)
        again = web.get("/api/queue", headers={"If-None-Match": first.headers["etag"]})
        if again.status_code == 304:
            break
    assert again.status_code == 304
    _, after = scrape(web)
    labels = {"method": "GET", "route": "/api/queue", "status": "304"}
    assert value(after, key, **labels) - value(before, key, **labels) == 1


@pytest.fixture
def guarded(app_env, monkeypatch):
    def client(**env: str) -> TestClient:
        for name, setting in env.items():
            monkeypatch.setenv(name, setting)
        get_settings.cache_clear()
        return TestClient(create_app(), follow_redirects=False)

    yield client
    monkeypatch.delenv("STACKLAB_TOKEN", raising=False)
    monkeypatch.delenv("STACKLAB_METRICS_PUBLIC", raising=False)
    get_settings.cache_clear()


def test_metrics_need_the_token_unless_a_setting_opens_them(guarded):
    with guarded(STACKLAB_TOKEN=TOKEN) as client:
        refused = client.get("/metrics")
        assert refused.status_code in (401, 303) and "stacklab_runs" not in refused.text
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope-nope"})
        assert "stacklab_runs" not in wrong.text
        names, _ = scrape(client, Authorization=f"Bearer {TOKEN}")
        assert names >= DOCUMENTED
    with guarded(STACKLAB_TOKEN=TOKEN, STACKLAB_METRICS_PUBLIC="true") as client:
        names, samples = scrape(client)
        assert names >= DOCUMENTED
        assert client.get("/api/runs").status_code == 401  # only /metrics is opened
        scrape(client)
        _, samples = scrape(client)
        labels = {"method": "GET", "route": "/metrics", "status": "200"}
        assert value(samples, "stacklab_http_request_duration_seconds_count", **labels) >= 2
