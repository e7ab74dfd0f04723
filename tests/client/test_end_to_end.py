"""The client, its CLI and the example notebook against a real `stacklab serve` (the
embedded stack, one for the module), with real workers training tiny runs on a small demo
data set registered before serve starts (the notebook's DATASET parameter). The notebook
runs top to bottom (a tune, a pretrain, two finetunes, a study, the report), then every
number the client gives of its runs is checked against the server's own JSON answer, and
its model loaded back.

Once, on one stack: the client speaks only HTTP, to routes that answer alike on every store
(tests/web runs them on SQLite and PostgreSQL), and real workers on PostgreSQL + Redis are
tested in tests/queue and tests/cli. One notebook's runs serve every check: a second
pretrain and study of their own (once per stack) cost the suite about seven minutes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from client.api import Client
from jobspec.status import RunStatus
from tests.cli.serving import start_serve
from tests.cli.slowkind import NAME as SLOW_KIND
from tests.stack import REPO_ROOT, scaled, stack_env

pytestmark = pytest.mark.slow

NOTEBOOK = REPO_ROOT / "docs" / "client_example.ipynb"
TINY = {"max_train_images": 200, "bn_momentum": 0.9}
# The notebook's own parameters cell, made tiny (top-level keys over its Quick look preset).
NOTEBOOK_OVERRIDES = {
    "tune": {"n_trials": 2, "epochs": 1, "kernel_sizes": [3], **TINY},
    "pretrain": TINY,
    "finetune": {"epochs": 1, **TINY},
}
# The notebook's data set: the demo's shapes, few enough test images that evaluating each
# of its eight runs (the seed's full-size models, on CPU) costs a second, not ten.
DATA_SET = "demo-small"
TRAINING = 600  # seconds a tiny run or study may take at most on a busy machine
SERVE_ENV = {
    # Nothing here tests the upkeep: a training child starved of CPU on a busy machine is
    # not given up for dead after FAST's 4 s (tests/queue does that on purpose).
    "STACKLAB_STALE_AFTER_SECONDS": "120",
    # The pretrain's probe stage reads a sample this small, not 5,000 images a part.
    "STACKLAB_LEARNED_MAX_IMAGES": "200",
    "STACKLAB_LEARNED_PCA_POINTS": "50",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`stacklab serve` (a training worker and the CPU lane) on a fresh embedded store."""
    tmp = tmp_path_factory.mktemp("client")
    env = {**SERVE_ENV, "STACKLAB_QUEUE": f"client-{uuid.uuid4().hex[:8]}"}
    data_dir = tmp / "serve-data"
    with stack_env({"STACKLAB_DATA_DIR": str(data_dir)}):
        from store.db import upgrade_schema
        from worker.datasets import register

        upgrade_schema()
        register(_small_demo(), name=DATA_SET)
    serving = start_serve(tmp, data_dir=data_dir, env=env)
    try:
        yield serving.up()
    finally:
        serving.stop()


def api(url: str, path: str) -> dict:
    answer = httpx.get(f"{url}{path}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _client_agrees_with_the_api(url: str, pretrain_id: int, group_id: int, out: Path) -> None:
    """What the client says of a pretrain and its study, against the server's JSON."""
    lab = Client(url)
    pretrain = lab.run(pretrain_id)
    assert pretrain.data["result"] == api(url, f"/api/runs/{pretrain.id}")["result"]
    series = api(url, f"/api/runs/{pretrain.id}/metrics.json")["series"]
    curves = pretrain.metrics()
    assert len(curves) == sum(len(s["values"]) for s in series.values())
    ae01 = curves[(curves.stage == "ae01") & (curves.key == "loss")]
    assert ae01["value"].tolist() == series["ae01/loss"]["values"]

    study = lab.study(group_id)
    judged = api(url, f"/api/groups/{group_id}/ablation")
    assert study.verdict == judged["verdict"]["text"]
    assert study.per_seed["difference"].tolist() == [p["difference"] for p in judged["pairs"]]
    assert study.arms["accuracy.mean"].tolist() == [
        arm["metrics"]["accuracy"]["mean"] for arm in judged["arms"]
    ]
    frame = lab.runs(group_id=group_id).set_index("id")
    for row in judged["runs"]:
        assert frame.loc[row["id"], "test_accuracy"] == row["accuracy"]
        assert frame.loc[row["id"], "status"] == RunStatus.SUCCEEDED

    finetune = lab.run(judged["runs"][0]["id"])
    model = finetune.load_model()
    assert _test_accuracy(model) == pytest.approx(finetune.test_accuracy, abs=1e-3)
    _cli_downloads_what_the_api_lists(url, pretrain.id, out)


def _small_demo():
    from worker.ml.datasets.demo import make_demo

    return make_demo(seed=0, n_train=400, n_test=100)


def _test_accuracy(model) -> float:
    """The model's accuracy on the notebook's data set's test split, computed here."""
    from worker.ml.evaluate import predict_proba

    demo = _small_demo()
    return float((predict_proba(model, demo.x_test).argmax(axis=1) == demo.y_test).mean())


def _cli_downloads_what_the_api_lists(url: str, run_id: int, out: Path) -> None:
    result = CliRunner().invoke(app, ["runs", "download", str(run_id), "--server", url,
                                      "--out", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    listed = api(url, f"/api/runs/{run_id}/artifacts")
    assert sorted(Path(p).name for p in json.loads(result.stdout)) == sorted(
        a["name"] for a in listed
    )
    sizes = {a["name"]: a["size"] for a in listed}
    assert all((out / name).stat().st_size == size for name, size in sizes.items())


def cli(*args: str) -> object:
    return CliRunner().invoke(app, ["runs", *args])


def test_the_cli_launches_waits_lists_shows_and_cancels_on_a_server(served):
    launched = cli("launch", SLOW_KIND, "--server", served.url, "--param", "epochs=2",
                   "--wait", "--json")  # fmt: skip
    assert launched.exit_code == 0, launched.output
    run = json.loads(launched.stdout)
    assert run["status"] == RunStatus.SUCCEEDED and run["params"] == {"epochs": 2}

    listed = cli("list", "--server", served.url, "--kind", SLOW_KIND, "--json")
    assert listed.exit_code == 0, listed.output
    assert run["id"] in [row["id"] for row in json.loads(listed.stdout)]
    table = cli("list", "--server", served.url, "--kind", SLOW_KIND)
    assert table.output.splitlines()[0].split()[:3] == ["id", "kind", "status"]
    assert any(line.split()[0] == str(run["id"]) for line in table.output.splitlines()[1:])
    shown = cli("show", str(run["id"]), "--server", served.url)
    assert f"status:   {RunStatus.SUCCEEDED}" in shown.output and "param.epochs = 2" in shown.output
    metrics = Client(served.url).run(run["id"]).metrics()
    assert metrics[metrics.key == "loss"]["epoch"].tolist() == [1, 2]

    long = json.loads(cli("launch", SLOW_KIND, "--server", served.url, "--param",
                          "epochs=1000", "--json").stdout)  # fmt: skip
    assert cli("cancel", str(long["id"]), "--server", served.url).exit_code == 0
    waited = cli("wait", str(long["id"]), "--server", served.url, "--timeout", "300")
    assert waited.exit_code == 1 and "cancelled" in waited.output
    refused = cli("launch", SLOW_KIND, "--server", served.url, "--param", "epochs=0")
    assert refused.exit_code == 2 and "params.epochs" in refused.output


@pytest.mark.timeout(scaled(1800))  # a tune, a pretrain and six finetunes on one worker
def test_the_example_notebook_runs_top_to_bottom_and_agrees_with_the_api(served, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source += (
        f"\nSERVER = {served.url!r}\nDATASET = {DATA_SET!r}\nOVERRIDES = {NOTEBOOK_OVERRIDES!r}\n"
    )
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "import httpx, json\n"
            "judged = httpx.get(f'{SERVER}/api/groups/{study.group_id}/ablation').json()\n"
            "assert study.verdict == judged['verdict']['text']\n"
            "assert report.verdicts == [study.verdict]\n"
            "print(json.dumps({'pretrain': pretrain.id, 'study': study.group_id}))"
        )
    )
    NotebookClient(
        notebook,
        timeout=int(scaled(TRAINING)),
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    last = json.loads(notebook.cells[-1].outputs[-1]["text"])
    report = api(served.url, f"/api/experiments/{last['pretrain']}")
    assert [s["group"]["id"] for s in report["studies"]] == [last["study"]]
    assert (tmp_path / "experiment-report.html").stat().st_size > 0
    _client_agrees_with_the_api(served.url, last["pretrain"], last["study"], tmp_path / "files")
