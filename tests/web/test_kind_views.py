"""A plug-in kind that is evaluated (`features.evaluation`) on a stage of its own, keeps
its best epoch by its own rule and names its weights files itself gets the views a
finetune gets: the run page asks the kind (its plan, `keeps`, `file_prefixes`), never a
finetune's params or stage. On SQLite and PostgreSQL (the `client` fixture)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ConfigDict, Field

from backend.runs import detail
from jobspec import kinds
from jobspec.kinds import Features, JobKind, Keep
from store.db import session_scope
from store.runs import service as runs_service
from tests.web.factories import make_run

STAGE = "tally"  # neither "finetune" nor a pretrain stage
PLANNED = 5
WEIGHTS = {"fold.weights.h5": b"h5", "fold.keras": b"keras", "other.txt": b"x"}


class TallyConfig(BaseModel):
    """Tallies sheep and keeps the tally with the lowest validation loss."""

    model_config = ConfigDict(extra="forbid")

    sheep: int = Field(PLANNED, ge=1, le=100)


TALLY = JobKind(
    name="tally_keeper",
    params=TallyConfig,
    entry="tests.toykind_job:count",
    plan=lambda config: {STAGE: config.sheep},
    keeps=lambda config: Keep(STAGE, "val_loss", "min"),
    features=Features(evaluation=True),
    file_prefixes={STAGE: "fold"},
)


@pytest.fixture
def tally() -> Iterator[JobKind[TallyConfig]]:
    with kinds.registered(TALLY) as kind:
        yield kind


def _tally_run(status: str, **fields) -> int:
    metrics = {f"{STAGE}/loss": [1.0, 0.8, 0.7], f"{STAGE}/val_loss": [0.9, 0.5, 0.6]}
    return make_run(TALLY.name, status, metrics=metrics, **fields)


def test_the_curves_mark_the_epoch_the_kinds_rule_keeps_in_its_own_stage(client, tally):
    run_id = _tally_run("running")
    figure = client.get(f"/api/runs/{run_id}/curves").json()["figure"]
    lines = [s for s in figure["layout"]["shapes"] if s["type"] == "line"]
    assert lines and {s["x0"] for s in lines} == {2}  # val_loss 0.5 at epoch 2
    with session_scope() as session:
        assert detail.best_epoch(session, runs_service.get_run(session, run_id)) == 2


def test_the_training_state_reads_the_planned_epochs_from_the_kinds_plan(client, tally):
    run_id = _tally_run("succeeded", result={"training": {"epochs_run": 3}})
    with session_scope() as session:
        state = detail.training_state(runs_service.get_run(session, run_id))
    assert state is not None
    assert state["epochs_planned"] == PLANNED  # not the 3 it ran: its params have no "epochs"
    assert state["text"] == f"stopped early at epoch 3 of {PLANNED}"


def test_a_cancelled_run_warns_on_the_files_its_kind_names_for_the_stage(client, tally):
    training = {"epochs_run": 3, "best_epoch": 2, "restored_best_weights": True}
    run_id = _tally_run(
        "cancelled", result={"training": {**training, "cancelled": True}}, artifacts=WEIGHTS
    )
    state = client.get(f"/api/runs/{run_id}/partial").json()
    partial = state["partial"]
    assert (partial["stage"], partial["epoch"], partial["epochs_planned"]) == (STAGE, 3, PLANNED)
    assert partial["weights_epoch"] == 2  # the kept epoch, not the last
    assert set(state["download_notes"]) == {"fold.weights.h5", "fold.keras"}
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert f"partial model from epoch 2 of {PLANNED}" in page.text


def test_a_tune_trials_planned_epochs_are_the_kinds_share_of_its_plan():
    tune = kinds.get("tune")
    params = {"stage": "ae01", "n_trials": 4, "epochs": 3}
    assert tune.epochs_of(params, "trial-2") == 3
    assert tune.epochs_of(params, "finetune") is None
    assert kinds.get("finetune").evaluated_stage({}) == "finetune"
    assert tune.evaluated_stage(params) is None


def test_the_new_run_form_marks_the_study_tab_and_no_page_or_script_names_it(client):
    """The ablation tab is a pseudo-kind (jobspec.kind_names.STUDY_FORM): the server marks
    its form, the templates and scripts never spell its name."""
    from backend.runs import form
    from tests.stack import REPO_ROOT

    page = client.get("/runs/new").text
    assert page.count("data-study") == 1  # in the study's form, after its opening tag
    opening = page.index(f'<form class="card run-form" data-kind="{form.STUDY_KIND}"')
    assert page.index("data-study") > opening
    assert "<form" not in page[opening + 1 : page.index("data-study")]
    quoted = re.compile(rf"""["']{form.STUDY_KIND}["']""")
    pages = [*(REPO_ROOT / "templates").rglob("*.html"), *(REPO_ROOT / "static/js").glob("*.js")]
    assert not [path.name for path in pages if quoted.search(path.read_text(encoding="utf-8"))]
