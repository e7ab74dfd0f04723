"""After the demo, `/` still opens the first-run page while the store holds only the demo,
and that page says what the demo found and what to do next (a fresh store per module)."""

from __future__ import annotations

from sqlalchemy import select

from jobspec.status import RunStatus
from store.db import session_scope
from store.runs.models import Run
from tests.web.factories import (
    demo_test_labels,
    evaluation_of,
    finetune_result,
    make_run,
    settle_queue,
    study_predictions,
)


def _home(client) -> str:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    return response.headers["location"]


def _finish(run_ids: list[int]) -> None:
    """The demo's runs succeed as a worker would leave them: every finetune at 80%."""
    from worker.ml.datasets.demo import CLASS_NAMES

    with session_scope() as session:
        for run in session.scalars(select(Run).where(Run.id.in_(run_ids))):
            run.status = RunStatus.SUCCEEDED
            if run.kind == "finetune":
                result = finetune_result(list(CLASS_NAMES))
                right = 14 + (run.seed + (run.params or {}).get("augment", False)) % 3
                result["evaluation"] = evaluation_of(
                    demo_test_labels(), study_predictions(right), list(CLASS_NAMES)
                )
                run.result = result


def test_the_first_run_page_follows_the_demo_to_its_next_step(client):
    assert _home(client) == "/welcome"
    demo = client.post("/api/demo", json={"dataset": "demo-tiny"}).json()
    try:
        assert _home(client) == "/welcome"  # only the demo: not silently the runs table
        page = client.get("/welcome").text
        assert "The demo is running" in page and "0 of its 5 runs finished" in page
        assert f'href="/groups/{demo["group_id"]}"' in page
        _finish(demo["run_ids"])
        page = client.get("/welcome").text
        assert "The demo has finished: what next?" in page and 'id="demo-verdict"' in page
        assert "augmentation" in page.split('id="demo-verdict"')[1].split("</div>")[0].lower()
        assert "<b>Add seeds</b>" in page and 'href="/datasets"' in page
        assert f"/runs/new?kind=ablation&amp;parent={demo['pretrain_id']}" in page
        assert 'id="launch-demo"' in page and "Run the demo again" in page
        make_run("finetune", name="my own run")  # the user's own work: the runs table
        assert _home(client) == "/runs"
    finally:
        settle_queue()


def test_the_demo_is_done_when_its_own_runs_are_whatever_else_builds_on_its_pretrain(client):
    """A study the user launched from the demo's pretrain is not the demo: while it runs,
    the page still says the demo has finished (and its script has nothing to wait for)."""
    demo = client.post("/api/demo", json={"dataset": "demo-tiny"}).json()
    try:
        _finish(demo["run_ids"])
        make_run("finetune", "running", name="built on the demo", parent_run_id=demo["pretrain_id"])
        page = client.get("/welcome").text
        assert "The demo has finished: what next?" in page and 'data-done="true"' in page
    finally:
        settle_queue()
