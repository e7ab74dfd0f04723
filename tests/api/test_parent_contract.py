"""What a child needs from its parent is declared by the parent's kind: the stages a
finished run of it provides (`provides`, read from its result) and the files a child's
worker fetches (`parent_files`). A plug-in kind that roots experiments is a parent like a
pretrain; one that does not declare both is refused at registration. On SQLite and
PostgreSQL (the `client` fixture)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ConfigDict, Field

from jobspec import kinds
from jobspec.kinds import Features, JobKind
from jobspec.stages import AE01, STAGES
from tests.web.factories import make_run

GRAFT = "graft.bin"  # the one file the plug-in parent hands down


class RootConfig(BaseModel):
    """Roots an experiment by making encoders."""

    model_config = ConfigDict(extra="forbid")

    depth: int = Field(1, ge=1, le=len(STAGES), description="How many stages it trains")


ROOT = JobKind(
    name="encoder_maker",
    params=RootConfig,
    entry="tests.toykind_job:count",
    plan=lambda config: {stage: 1 for stage in STAGES[: config.depth]},
    features=Features(experiment_root=True),
    provides=lambda result: tuple(result.get("made") or ()),
    parent_files=(GRAFT,),
)
STACKED = {"encoder": "stacked", "epochs": 1}  # needs ae01, ae02 and ae03


@pytest.fixture
def root() -> Iterator[JobKind[RootConfig]]:
    with kinds.registered(ROOT) as kind:
        yield kind


def _finetune(client, parent_id: int):
    body = {"kind": "finetune", "dataset": "demo-tiny", "params": STACKED}
    return client.post("/api/runs", json={**body, "parent_run_id": parent_id})


def _reason(response) -> str:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == "parent_run_id"
    return error["msg"]


def test_a_parent_kind_must_declare_what_it_provides_and_its_files():
    with pytest.raises(ValueError, match="provides"):
        kinds.register(dataclasses.replace(ROOT, parent_files=()))
    with pytest.raises(ValueError, match="provides"):
        kinds.register(dataclasses.replace(ROOT, provides=JobKind.provides))
    assert ROOT.name not in kinds.names()


def test_a_finished_plug_in_parent_provides_what_its_kind_reads_from_its_result(client, root):
    made_all = make_run(ROOT.name, "succeeded", params={"depth": 3}, result={"made": STAGES})
    assert _finetune(client, made_all).status_code == 201
    made_one = make_run(ROOT.name, "succeeded", params={"depth": 3}, result={"made": [AE01]})
    assert "did not train ae02, ae03" in _reason(_finetune(client, made_one))


def test_a_running_parent_must_plan_the_stages_a_child_needs(client, root):
    shallow = make_run(ROOT.name, "running", params={"depth": 1})
    assert "does not train ae02, ae03" in _reason(_finetune(client, shallow))
    deep = make_run(ROOT.name, "running", params={"depth": 3})
    assert _finetune(client, deep).status_code == 201


def test_an_ablation_refuses_a_running_parent_that_cannot_provide_its_encoders(client, root):
    shallow = make_run(ROOT.name, "running", params={"depth": 1})
    body = {"dataset": "demo-tiny", "factor": "augmentation", "params": STACKED, "seeds": [0, 1]}
    response = client.post("/api/ablations", json={**body, "parent_run_id": shallow})
    assert "does not train ae02, ae03" in _reason(response)


def test_the_worker_fetches_the_files_the_parents_kind_names(client, root, tmp_path):
    from worker import runner

    parent = make_run(
        ROOT.name,
        "succeeded",
        result={"made": STAGES},
        artifacts={GRAFT: b"weights", "ae01.weights.h5": b"not handed down"},
    )
    fetched = runner._fetch_parent(parent, tmp_path)
    assert sorted(p.name for p in fetched.iterdir()) == [GRAFT]
    assert (fetched / GRAFT).read_bytes() == b"weights"
