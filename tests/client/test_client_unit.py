"""The client on its own, against answers made up with httpx.MockTransport: errors carry
the server's fields, the token is sent, metrics come out tidy, downloads are checked, and
importing it loads no framework."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import httpx
import pytest

from client import errors
from client.api import Client, with_preset
from client.frames import _unguarded
from client.runs import Run, default_model
from jobspec.status import RunStatus
from tests.stack import REPO_ROOT

URL = "http://stacklab.test"
HEAVY = ("tensorflow", "keras", "fastapi", "starlette", "sqlalchemy", "celery", "kombu")
OURS = ("store", "backend", "worker", "pandas")


def lab_answering(handler) -> Client:
    return Client(URL, transport=httpx.MockTransport(handler))


def run_body(status: RunStatus = RunStatus.QUEUED, **fields) -> dict:
    return {"id": 7, "kind": "pretrain", "name": "p", "status": status, "params": {}} | fields


def test_importing_the_client_and_its_cli_loads_no_framework_nor_another_room():
    code = (
        "import sys, client.api, client.runs, client.studies, client.reports, cli.remote\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY + OURS)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_422_carries_every_field_the_server_named():
    body = {
        "detail": [{"loc": ["body", "params", "epochs"], "msg": "too many", "type": "limit"}],
        "errors": [
            {"loc": ["body", "params", "epochs"], "msg": "too many", "type": "limit"},
            {"loc": ["body", "dataset"], "msg": "no such data set", "type": "missing"},
        ],
    }
    lab = lab_answering(lambda request: httpx.Response(422, json=body))
    with pytest.raises(errors.InvalidRequest) as caught:
        lab.launch("pretrain", "nope", {"epochs": 10**6})
    assert [(f.field, f.message) for f in caught.value.fields] == [
        ("params.epochs", "too many"),
        ("dataset", "no such data set"),
    ]
    assert "params.epochs: too many" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, errors.AuthenticationError),
        (404, errors.NotFound),
        (503, errors.Unavailable),
        (507, errors.Unavailable),
        (500, errors.ApiError),
    ],
)
def test_each_refusal_is_its_own_type_with_the_servers_sentence(status, kind):
    headers = {"Retry-After": "5"}
    answer = httpx.Response(status, json={"detail": "the reason"}, headers=headers)
    lab = lab_answering(lambda request: answer)
    with pytest.raises(kind) as caught:
        lab.run(1)
    assert caught.value.status == status and caught.value.message == "the reason"
    if kind is errors.Unavailable:
        assert caught.value.retry_after == 5


def test_no_server_is_server_unreachable():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(errors.ServerUnreachable):
        lab_answering(refuse).run(1)


def test_the_token_goes_as_a_bearer_header_from_the_argument_or_the_environment(monkeypatch):
    seen: list[str | None] = []

    def handler(request):
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json=run_body())

    monkeypatch.setenv("STACKLAB_TOKEN", "from-env")
    Client(URL, transport=httpx.MockTransport(handler)).run(7)
    Client(URL, token="given", transport=httpx.MockTransport(handler)).run(7)
    monkeypatch.delenv("STACKLAB_TOKEN")
    Client(URL, transport=httpx.MockTransport(handler)).run(7)
    assert seen == ["Bearer from-env", "Bearer given", None]


def test_wait_raises_run_failed_with_the_servers_error():
    body = run_body(RunStatus.FAILED, error="ValueError: out of memory")
    lab = lab_answering(lambda request: httpx.Response(200, json=body))
    with pytest.raises(errors.RunFailed, match="out of memory") as caught:
        lab.run(7).wait(progress=False)
    assert caught.value.run.status is RunStatus.FAILED


def test_wait_gives_up_after_its_timeout_and_says_where_the_run_stands():
    body = run_body(RunStatus.RUNNING, progress={"stage": "ae02", "stage_index": 2})
    lab = lab_answering(lambda request: httpx.Response(200, json=body))
    with pytest.raises(errors.WaitTimeout, match="ae02"):
        lab.run(7).wait(timeout=0, progress=False)


def test_metrics_are_tidy_one_row_per_stage_epoch_and_key():
    series = {
        "ae01/loss": {"steps": [1, 2], "values": [0.5, 0.4]},
        "finetune/val_accuracy": {"steps": [1], "values": [0.3]},
    }
    body = {"run_id": 7, "series": series, "summary": {}}
    lab = lab_answering(lambda request: httpx.Response(200, json=body))
    frame = Run(lab.http, run_body()).metrics()
    assert list(frame.columns) == ["stage", "epoch", "key", "value"]
    assert frame.values.tolist() == [
        ["ae01", 1, "loss", 0.5],
        ["ae01", 2, "loss", 0.4],
        ["finetune", 1, "val_accuracy", 0.3],
    ]


def test_a_download_that_does_not_match_its_checksum_leaves_no_file(tmp_path):
    content = b"weights"
    good = hashlib.sha256(content).hexdigest()

    def handler(request):
        checksum = good if request.url.path.endswith("good.h5") else "0" * 64
        return httpx.Response(200, content=content, headers={"X-Checksum-SHA256": checksum})

    run = Run(lab_answering(handler).http, run_body())
    assert run.download(tmp_path, ["good.h5"])[0].read_bytes() == content
    with pytest.raises(errors.StacklabError, match="SHA-256"):
        run.download(tmp_path, ["bad.h5"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.h5"]


def test_a_file_name_cannot_leave_the_target_folder(tmp_path):
    lab = lab_answering(lambda request: httpx.Response(200, content=b"x"))
    (path,) = Run(lab.http, run_body()).download(tmp_path / "in", ["../../outside.txt"])
    assert path == tmp_path / "in" / "outside.txt"


def test_load_model_prefers_the_classifier_then_the_stacked_autoencoder():
    assert default_model(["ae01.keras", "classifier.keras"], run_id=1) == "classifier.keras"
    assert default_model(["ae01.keras", "stacked_ae.keras"], run_id=1) == "stacked_ae.keras"
    assert default_model(["a.keras", "b.keras", "m.csv"], run_id=1) == "b.keras"
    with pytest.raises(errors.StacklabError, match="no .keras"):
        default_model(["metrics.csv"], run_id=1)


def test_a_preset_is_the_forms_values_with_the_given_params_over_them():
    params = with_preset("pretrain", "quick", {"ae01": {"epochs": 1}, "seed": 3})
    assert params["ae01"] == {"epochs": 1, "batch_size": 32}
    assert params["ae02"]["epochs"] == 2 and params["max_train_images"] == 1500
    assert params["seed"] == 3
    with pytest.raises(errors.StacklabError, match="offers quick, seed, full"):
        with_preset("pretrain", "huge", None)


def test_the_exports_formula_guard_is_undone_and_nothing_else():
    assert _unguarded("'=SUM(A1)") == "=SUM(A1)"
    assert _unguarded("'-x") == "-x"
    assert _unguarded("'quoted'") == "'quoted'"
    assert _unguarded(3) == 3


def test_the_html_of_a_run_escapes_what_it_shows():
    run = Run(lab_answering(lambda r: httpx.Response(200)).http, run_body(name="<b>x</b>"))
    html = run._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert f'href="{URL}/runs/7"' in html


def test_errors_from_a_body_that_is_not_json_keep_its_text():
    lab = lab_answering(lambda request: httpx.Response(502, text="Bad gateway"))
    with pytest.raises(errors.ApiError, match="Bad gateway"):
        lab.run(1)


def test_a_study_is_its_verdict_arms_and_seeds_as_tables():
    arm = {"name": "off", "label": "Off", "role": "baseline", "runs": 2, "finished": 2}
    metrics = {"accuracy": {"n": 2, "mean": 40.0, "sd": 1.0}}
    body = {
        "group": {"id": 3, "name": "s"},
        "factor": {"name": "augmentation", "question": "q"},
        "metric": {"name": "accuracy", "label": "accuracy"},
        "verdict": {"outcome": "helped", "text": "It helped."},
        "difference": {"n": 2, "mean": 1.5},
        "arms": [arm | {"metrics": metrics, "rare_recall": []}],
        "pairs": [
            {
                "seed": 0,
                "baseline": {"id": 1, "value": 40.0},
                "treatment": {"id": 2, "value": 41.5},
                "difference": 1.5,
            }
        ],  # fmt: skip
        "runs": [{"id": 1, "name": "a", "status": RunStatus.SUCCEEDED, "arm": "off", "seed": 0}],
        "running": False,
    }
    study = lab_answering(lambda request: httpx.Response(200, json=body)).study(3)
    assert study.verdict == "It helped." and study.outcome == "helped"
    assert study.arms.to_dict("records") == [
        arm | {"accuracy.n": 2, "accuracy.mean": 40.0, "accuracy.sd": 1.0}
    ]
    assert study.per_seed.columns.tolist() == [
        "seed", "baseline.id", "baseline.value", "treatment.id", "treatment.value", "difference",
    ]  # fmt: skip
    assert study.runs["id"].tolist() == [1]
    assert study.wait(progress=False) is study  # nothing running: at once
    assert "It helped." in study._repr_html_()


def test_a_report_is_its_tables_and_its_offline_page(tmp_path):
    body = {
        "id": 4,
        "dataset": {"name": "demo"},
        "root": {"name": "pre", "stages": [{"stage": "ae01", "best_value": 0.1}]},
        "tunes": [{"id": 5, "best_params": {"kernel_size": 3}}],
        "finetunes": [
            {
                "id": 6,
                "name": "ft",
                "encoder": "stacked",
                "augment": True,
                "seed": 0,
                "status": RunStatus.SUCCEEDED,
                "warnings": [],
                "scores": {"accuracy": 0.5},
            }
        ],  # fmt: skip
        "studies": [{"verdict": {"text": "Inconclusive."}}],
    }

    def handler(request):
        if request.url.path.endswith("report.html"):
            return httpx.Response(200, text="<html>report</html>")
        return httpx.Response(200, json=body)

    report = lab_answering(handler).report(4)
    assert report.verdicts == ["Inconclusive."]
    assert report.tunes["best_params.kernel_size"].tolist() == [3]
    assert report.finetunes["scores.accuracy"].tolist() == [0.5]
    assert report.stages["stage"].tolist() == ["ae01"]
    assert report.save_html(tmp_path / "r.html").read_text() == "<html>report</html>"
    assert "Inconclusive." in report._repr_html_()
