"""Limits of work: each at its limit is accepted, one past it is refused naming the field
and the setting, and a refusal creates nothing."""

from __future__ import annotations

import contextlib
import os

import pytest

from jobspec import budget
from jobspec.params import FinetuneConfig
from store.settings import get_settings

ONE_EPOCH = {"ae01": {"epochs": 1}, "ae02": {"epochs": 1}, "ae03": {"epochs": 1}}


@contextlib.contextmanager
def limits(**values):
    """Run with some STACKLAB_MAX_* settings changed."""
    saved = {key: os.environ.get(f"STACKLAB_{key.upper()}") for key in values}
    os.environ.update({f"STACKLAB_{k.upper()}": str(v) for k, v in values.items()})
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(f"STACKLAB_{key.upper()}", None)
            else:
                os.environ[f"STACKLAB_{key.upper()}"] = value
        get_settings.cache_clear()


def _total(client) -> int:
    return client.get("/api/runs").json()["total"]


def _refused(response, loc: list[str], setting: str) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", *loc], detail
    assert f"STACKLAB_{setting.upper()}" in detail["msg"], detail


def _launch(client, kind: str, params: dict, **extra):
    return client.post(
        "/api/runs", json={"kind": kind, "dataset": "demo-tiny", "params": params, **extra}
    )


def _study(client, seeds: list[int], **extra):
    body = {"dataset": "demo-tiny", "params": {"encoder": "scratch", "epochs": 1}, "seeds": seeds}
    return client.post("/api/augmentation-studies", json={**body, **extra})


CASES = [
    # (settings, kind, params at the limit, params one past, refused field, setting)
    ({"max_epochs": 4}, "finetune", {"encoder": "scratch", "epochs": 4}, {"epochs": 5},
     ["params", "epochs"], "max_epochs"),
    ({"max_epochs": 4}, "pretrain", {**ONE_EPOCH, "ae02": {"epochs": 4}},
     {"ae02": {"epochs": 5}}, ["params", "ae02", "epochs"], "max_epochs"),
    ({"max_trials": 3}, "tune", {"n_trials": 3, "epochs": 1}, {"n_trials": 4},
     ["params", "n_trials"], "max_trials"),
    ({"max_total_epochs": 12}, "tune", {"n_trials": 3, "epochs": 4}, {"n_trials": 4},
     ["params", "n_trials"], "max_total_epochs"),
    ({"max_total_epochs": 3}, "pretrain", ONE_EPOCH, {"ae03": {"epochs": 2}},
     ["params"], "max_total_epochs"),
    ({"max_batch_size": 64}, "finetune", {"encoder": "scratch", "epochs": 1, "batch_size": 64},
     {"batch_size": 65}, ["params", "batch_size"], "max_batch_size"),
    ({"max_batch_size": 64}, "pretrain",
     {s: {"epochs": 1, "batch_size": 64} for s in ("ae01", "ae02", "ae03")},
     {"ae03": {"epochs": 1, "batch_size": 65}}, ["params", "ae03", "batch_size"],
     "max_batch_size"),
]  # fmt: skip


@pytest.mark.parametrize("settings, kind, at, past, loc, setting", CASES)
def test_each_limit_accepts_its_value_and_refuses_one_more(
    client, settings, kind, at, past, loc, setting
):
    with limits(**settings):
        accepted = _launch(client, kind, at)
        assert accepted.status_code == 201, accepted.text
        before = _total(client)
        merged = {**at, **past}
        _refused(_launch(client, kind, merged), loc, setting)
        assert _total(client) == before


def test_batch_memory_is_estimated_for_the_chosen_model(client):
    config = {"encoder": "scratch", "epochs": 1, "batch_size": 32}
    per_image = budget.batch_memory_mb("finetune", FinetuneConfig(**config)) / 32
    assert 4 < per_image < 7  # stacked classifier: about 5.3 MB per image measured on TF-CPU
    single = {**config, "architecture": "single"}
    single_per_image = budget.batch_memory_mb("finetune", FinetuneConfig(**single)) / 32
    assert single_per_image < per_image
    limit = int(per_image * 32) + 1  # batch 32 of the stacked model fits, 33 does not
    with limits(max_batch_memory_mb=limit):
        assert _launch(client, "finetune", config).status_code == 201
        refused = _launch(client, "finetune", {**config, "batch_size": 33})
        _refused(refused, ["params", "batch_size"], "max_batch_memory_mb")
        assert "MiB" in refused.json()["detail"][0]["msg"]
        # the same batch of the smaller model still fits
        assert _launch(client, "finetune", {**single, "batch_size": 33}).status_code == 201


def test_parallel_parts_and_runs_per_request(client):
    tune = {"n_trials": 1, "epochs": 1}
    with limits(max_parallel=3, max_runs_per_request=2):
        assert _launch(client, "tune", tune, parallel=2).status_code == 201
        before = _total(client)
        _refused(_launch(client, "tune", tune, parallel=3), ["parallel"], "max_runs_per_request")
        _refused(_launch(client, "tune", tune, parallel=4), ["parallel"], "max_parallel")
        assert _total(client) == before


def test_seeds_per_study_and_runs_per_request(client):
    with limits(max_seeds=2, max_runs_per_request=4):
        assert _study(client, [0, 1]).status_code == 201
        before = _total(client)
        _refused(_study(client, [0, 1, 2]), ["seeds"], "max_seeds")
        repeated = _study(client, [3, 3])
        assert repeated.status_code == 422 and "repeated" in repeated.text
    with limits(max_seeds=5, max_runs_per_request=4):
        _refused(_study(client, [0, 1, 2]), ["seeds"], "max_runs_per_request")
        _refused(_study(client, [0, 1], name="x" * 201), ["name"], "max_name_length")
    assert _total(client) == before


def test_queued_runs_in_total(client):
    from jobspec.status import RunStatus
    from store.db import session_scope
    from store.runs.models import Run

    with session_scope() as session:
        active = session.query(Run).filter(Run.status.in_(RunStatus.active())).count()
    with limits(max_queued_runs=active + 2):
        assert _launch(client, "pretrain", ONE_EPOCH).status_code == 201
        before = _total(client)
        refused = _launch(client, "tune", {"n_trials": 1, "epochs": 1}, parallel=2)
        _refused(refused, ["queued_runs"], "max_queued_runs")
        _refused(_study(client, [0, 1]), ["queued_runs"], "max_queued_runs")
        assert _total(client) == before
        assert _launch(client, "pretrain", ONE_EPOCH).status_code == 201  # the last place


def test_names_and_tags(client):
    with limits(max_name_length=10, max_tags=2, max_tag_length=5):
        ok = _launch(client, "pretrain", ONE_EPOCH, name="x" * 10, tags=["abcde", "b"])
        assert ok.status_code == 201, ok.text
        before = _total(client)
        _refused(_launch(client, "pretrain", ONE_EPOCH, name="x" * 11), ["name"], "max_name_length")
        _refused(_launch(client, "pretrain", ONE_EPOCH, tags=["a", "b", "c"]), ["tags"], "max_tags")
        long_tag = _launch(client, "pretrain", ONE_EPOCH, tags=["a", "abcdef"])
        _refused(long_tag, ["tags", "1"], "max_tag_length")
        run_id = ok.json()[0]["id"]
        clone = client.post(f"/api/runs/{run_id}/clone", json={"tags": ["toolong"]})
        _refused(clone, ["tags", "0"], "max_tag_length")
        assert _total(client) == before


def test_request_body_is_capped_as_it_streams(client):
    from fastapi.testclient import TestClient

    from backend.main import create_app

    before = _total(client)
    body = b'{"kind": "pretrain", "dataset": "demo-tiny", "name": "' + b"x" * 2000 + b'"}'

    def chunks():  # no Content-Length: the bytes are counted as they come
        yield body[:900]
        yield body[900:]

    with limits(max_request_kb=1), TestClient(create_app()) as small_app:
        json_headers = {"content-type": "application/json"}
        declared = small_app.post("/api/runs", content=body, headers=json_headers)
        assert declared.status_code == 413 and "STACKLAB_MAX_REQUEST_KB" in declared.text
        streamed = small_app.post("/api/runs", content=chunks(), headers=json_headers)
        assert streamed.status_code == 413, streamed.text
        under = small_app.post("/api/runs", json={"kind": "pretrain", "name": "x" * 900})
        assert under.status_code == 422  # under the limit the request is parsed as usual
        # uploads have their own limit: a 2 KiB file is not refused by the 1 KiB JSON one
        upload = small_app.post(
            "/api/datasets/upload?name=small-upload-limit",
            files={"file": ("x.txt", b"x" * 2048)},
        )
        assert upload.status_code == 422 and "upload a .npz" in upload.text
    # the default (1 MiB) refuses a 10 MB tag before it is parsed, and echoes nothing back
    huge = client.post(
        "/api/runs", json={"kind": "pretrain", "dataset": "demo-tiny", "tags": ["t" * 10**7]}
    )
    assert huge.status_code == 413 and len(huge.content) < 1000
    assert _total(client) == before


def test_clone_with_bad_edits_is_422_not_500(client):
    run = _launch(client, "pretrain", ONE_EPOCH).json()[0]
    for edits in ({"params": "x"}, {"tags": "not-a-list"}, {"name": 5}, {"params": [1]}):
        response = client.post(f"/api/runs/{run['id']}/clone", json=edits)
        assert response.status_code == 422, (edits, response.text)


def test_the_form_offers_no_more_than_the_limits(client):
    with limits(max_epochs=7, max_batch_size=96):
        html = client.get("/runs/new?kind=finetune").text
    assert 'name="params.epochs"' in html
    epochs = html[html.index('name="params.epochs"') :].split(">", 1)[0]
    batch = html[html.index('name="params.batch_size"') :].split(">", 1)[0]
    assert 'max="7"' in epochs and 'max="96"' in batch


def test_queued_runs_per_token_when_several_are_configured(client):
    tokens = '{"ana": "ana-token-1", "ben": "ben-token-2"}'
    with limits(tokens=tokens, max_queued_runs_per_token=2):
        from fastapi.testclient import TestClient

        from backend.main import create_app

        with TestClient(create_app()) as guarded:
            ana = {"Authorization": "Bearer ana-token-1"}
            ben = {"Authorization": "Bearer ben-token-2"}

            def launch(headers, **extra):
                body = {"kind": "pretrain", "dataset": "demo-tiny", "params": ONE_EPOCH, **extra}
                return guarded.post("/api/runs", json=body, headers=headers)

            assert guarded.get("/api/runs").status_code == 401
            first = launch(ana)
            assert first.status_code == 201 and first.json()[0]["launched_by"] == "ana"
            assert launch(ana).status_code == 201
            _refused(launch(ana), ["queued_runs"], "max_queued_runs_per_token")
            assert launch(ben).status_code == 201  # ben's share is his own
            # a finished run frees a place
            run_id = first.json()[0]["id"]
            assert guarded.post(f"/api/runs/{run_id}/cancel", headers=ana).status_code == 200
            assert launch(ana).status_code == 201
            # re-queueing counts against the run's launcher too
            _refused(
                guarded.post(f"/api/runs/{run_id}/requeue", headers=ben),
                ["queued_runs"],
                "max_queued_runs_per_token",
            )
            page = guarded.get(f"/runs/{run_id}", headers=ana).text
            assert "Launched by" in page and "ana" in page


def test_refusals_do_not_echo_long_input(client):
    run = _launch(client, "pretrain", ONE_EPOCH).json()[0]
    key = "k" * 500_000  # a clone edit may name any field: the answer names it briefly
    response = client.post(f"/api/runs/{run['id']}/clone", json={key: 1})
    assert response.status_code == 422 and len(response.content) < 2_000
    long_name = _launch(client, "pretrain", ONE_EPOCH, dataset="d" * 500_000)
    assert long_name.status_code == 422 and len(long_name.content) < 2_000


# --- Epochs planned per request and queued (store/runs/limits.py check_epochs). ---


def _queued_epochs(launched_by: str | None = None) -> int:
    """Planned epochs of the runs queued or running (this module's store), as the check sums."""
    from sqlalchemy import func, select

    from jobspec.status import RunStatus
    from store.db import session_scope
    from store.runs.models import Run

    query = select(func.coalesce(func.sum(Run.planned_epochs), 0)).where(
        Run.status.in_(RunStatus.active())
    )
    if launched_by is not None:
        query = query.where(Run.launched_by == launched_by)
    with session_scope() as session:
        return int(session.scalar(query) or 0)


def _groups() -> int:
    from sqlalchemy import func, select

    from store.db import session_scope
    from store.runs.models import RunGroup

    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(RunGroup)) or 0)


def test_the_reported_tune_of_8_parts_x_1000_trials_x_10_epochs_is_refused_by_default(client):
    before, groups = _total(client), _groups()
    tune = {"n_trials": 1000, "epochs": 10}  # each part within every per-run limit
    refused = _launch(client, "tune", tune, parallel=8)
    _refused(refused, ["parallel"], "max_request_epochs")
    assert "80,000 epochs" in refused.json()["detail"][0]["msg"]
    assert (_total(client), _groups()) == (before, groups)  # no group, no run left behind


def test_epochs_per_request_sum_every_run_the_request_creates(client):
    with limits(max_request_epochs=24):
        # parallel tune: parts x trials x epochs
        at = _launch(client, "tune", {"n_trials": 3, "epochs": 4}, parallel=2)
        assert at.status_code == 201, at.text
        assert [run["id"] for run in at.json()]
        before, groups = _total(client), _groups()
        _refused(
            _launch(client, "tune", {"n_trials": 3, "epochs": 5}, parallel=2),
            ["parallel"],
            "max_request_epochs",
        )
        # one run: its plan, named by its params
        assert _launch(client, "finetune", {"encoder": "scratch", "epochs": 24}).status_code == 201
        before += 1
        over = _launch(client, "finetune", {"encoder": "scratch", "epochs": 25})
        _refused(over, ["params"], "max_request_epochs")
        assert (_total(client), _groups()) == (before, groups)
    with limits(max_request_epochs=6):
        # a study: seeds x arms x epochs (3 x 2 x 1 fits, 3 x 2 x 2 does not)
        assert _study(client, [0, 1, 2]).status_code == 201
        before, groups = _total(client), _groups()
        body = {"params": {"encoder": "scratch", "epochs": 2}}
        _refused(_study(client, [0, 1, 2], **body), ["seeds"], "max_request_epochs")
        ablation = client.post(
            "/api/ablations",
            json={"factor": "augmentation", "dataset": "demo-tiny", "seeds": [0, 1, 2], **body},
        )
        _refused(ablation, ["seeds"], "max_request_epochs")
        assert (_total(client), _groups()) == (before, groups)


def test_clone_and_requeue_count_the_epochs_they_plan(client):
    run = _launch(client, "finetune", {"encoder": "scratch", "epochs": 8}).json()[0]
    assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 200
    with limits(max_request_epochs=7):
        before = _total(client)
        clone = client.post(f"/api/runs/{run['id']}/clone", json={})
        _refused(clone, ["params"], "max_request_epochs")
        _refused(client.post(f"/api/runs/{run['id']}/requeue"), ["run"], "max_request_epochs")
        assert _total(client) == before
        assert client.get(f"/api/runs/{run['id']}").json()["status"] == "cancelled"
        smaller = client.post(f"/api/runs/{run['id']}/clone", json={"params": {"epochs": 7}})
        assert smaller.status_code == 201, smaller.text
    assert client.post(f"/api/runs/{run['id']}/requeue").status_code == 200


def test_queued_epochs_in_total(client):
    queued = _queued_epochs()
    with limits(max_queued_epochs=queued + 10):
        assert _launch(client, "finetune", {"encoder": "scratch", "epochs": 6}).status_code == 201
        before = _total(client)
        over = _launch(client, "finetune", {"encoder": "scratch", "epochs": 5})
        _refused(over, ["queued_epochs"], "max_queued_epochs")
        _refused(_study(client, [0, 1, 2]), ["queued_epochs"], "max_queued_epochs")  # 6 more
        assert _total(client) == before
        last = _launch(client, "finetune", {"encoder": "scratch", "epochs": 4})
        assert last.status_code == 201  # the last place
    assert _queued_epochs() == queued + 10


def test_queued_epochs_per_token_when_several_are_configured(client):
    from fastapi.testclient import TestClient

    from backend.main import create_app

    tokens = '{"cleo": "cleo-token-1", "dan": "dan-token-22"}'
    with limits(tokens=tokens, max_queued_epochs_per_token=10), TestClient(create_app()) as app:
        cleo = {"Authorization": "Bearer cleo-token-1"}
        dan = {"Authorization": "Bearer dan-token-22"}

        def launch(headers, epochs: int, **extra):
            params = {"encoder": "scratch", "epochs": epochs}
            body = {"kind": "finetune", "dataset": "demo-tiny", "params": params, **extra}
            return app.post("/api/runs", json=body, headers=headers)

        first = launch(cleo, 6)
        assert first.status_code == 201 and first.json()[0]["launched_by"] == "cleo"
        refused = launch(cleo, 5)
        _refused(refused, ["queued_epochs"], "max_queued_epochs_per_token")
        assert "'cleo'" in refused.json()["detail"][0]["msg"]
        assert launch(dan, 10).status_code == 201  # dan's share is his own
        assert _queued_epochs("cleo") == 6 and _queued_epochs("dan") == 10
        assert launch(cleo, 4).status_code == 201  # up to the limit
        # a finished run frees its epochs
        run_id = first.json()[0]["id"]
        assert app.post(f"/api/runs/{run_id}/cancel", headers=cleo).status_code == 200
        assert launch(cleo, 5).status_code == 201
        # re-queueing counts against the run's launcher, whoever asks
        _refused(
            app.post(f"/api/runs/{run_id}/requeue", headers=dan),
            ["queued_epochs"],
            "max_queued_epochs_per_token",
        )
        assert _queued_epochs("cleo") == 9


def test_runs_stored_before_planned_epochs_count_as_none_until_requeued(client):
    """Migration 0009 leaves planned_epochs NULL on older rows: 0 in the sums, filled in by
    the next re-queue (from the stored params)."""
    from store.db import session_scope
    from store.runs.models import Run

    run = _launch(client, "finetune", {"encoder": "scratch", "epochs": 9}).json()[0]
    assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 200
    with session_scope() as session:
        stored = session.get(Run, run["id"])
        assert stored.planned_epochs == 9
        stored.planned_epochs = None
    queued = _queued_epochs()
    with limits(max_queued_epochs=queued + 8):
        _refused(
            client.post(f"/api/runs/{run['id']}/requeue"), ["queued_epochs"], "max_queued_epochs"
        )
    assert client.post(f"/api/runs/{run['id']}/requeue").status_code == 200
    assert _queued_epochs() == queued + 9
