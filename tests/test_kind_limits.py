"""The limits of work ask a plugged-in kind only what it declares: a kind that estimates
its batch memory without a field called `batch_size`, or whose trials field may be left
unset, is refused (or accepted) with a 422's reason, never a crash."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel, ConfigDict, Field

from jobspec import kinds
from store.errors import InvalidRequest
from store.runs import limits
from store.settings import Settings


class OneFieldConfig(BaseModel):
    """A kind with a single, optional field."""

    model_config = ConfigDict(extra="forbid")

    rounds: int | None = Field(None, ge=1, description="Rounds; none: until told to stop")


BASE = kinds.JobKind(name="limits_probe", params=OneFieldConfig, entry="tests.toykind_job:count")


def test_a_kind_too_big_for_memory_without_a_batch_size_field_is_refused_by_name():
    heavy = dataclasses.replace(BASE, batch_memory_mb=lambda config: 1e9)
    with kinds.registered(heavy), pytest.raises(InvalidRequest) as refused:
        limits.check_params(Settings(), heavy.name, OneFieldConfig(rounds=1))
    (error,) = refused.value.errors
    assert error.field == "params" and "MAX_BATCH_MEMORY_MB" in error.reason


def test_an_unset_trials_field_counts_as_no_trials():
    open_ended = dataclasses.replace(BASE, trials_field="rounds")
    assert open_ended.trials(OneFieldConfig()) is None
    assert open_ended.trials(OneFieldConfig(rounds=3)) == 3
    with kinds.registered(open_ended):
        limits.check_params(Settings(), open_ended.name, OneFieldConfig())
        with pytest.raises(InvalidRequest) as refused:
            limits.check_params(Settings(max_trials=2), open_ended.name, OneFieldConfig(rounds=3))
    assert refused.value.errors[0].field == "params.rounds"


class CappedConfig(BaseModel):
    """A kind whose quick-run cap is its own field, and whose `steps_per_epoch` is not one."""

    model_config = ConfigDict(extra="forbid")

    sample: int | None = Field(None, ge=1, description="Train on this many images at most")
    steps_per_epoch: int | None = Field(None, ge=1, description="Not a cap of this kind")


CAPPED = kinds.JobKind(
    name="capped_probe",
    params=CappedConfig,
    entry="tests.toykind_job:count",
    split=lambda config: kinds.SplitPlan(max_train_images=config.sample),
)


@pytest.mark.parametrize(
    ("params", "quick"),
    [({"sample": 50}, True), ({"steps_per_epoch": 2}, False), ({}, False)],
)
def test_the_quick_tag_comes_from_the_kinds_split_not_from_field_names(client, params, quick):
    with kinds.registered(CAPPED):
        response = client.post(
            "/api/runs",
            json={"kind": CAPPED.name, "dataset": "demo-tiny", "params": params, "tags": ["a"]},
        )
    assert response.status_code == 201, response.text
    assert response.json()[0]["tags"] == (["a", "quick"] if quick else ["a"])


def test_a_stored_runs_planned_epochs_come_from_its_kinds_plan():
    """What a re-queue counts for a run stored before planned_epochs (migration 0009)."""
    planned = dataclasses.replace(BASE, plan=lambda config: {"round": 2 * (config.rounds or 0)})
    with kinds.registered(planned):
        assert limits.planned_epochs(planned.name, {"rounds": 3}) == 6
        assert limits.planned_epochs(planned.name, {"rounds": "many"}) == 0  # no longer valid
    assert limits.planned_epochs("no_such_kind", {"rounds": 3}) == 0  # its plug-in is gone


def test_epochs_per_request_and_queued_name_their_setting(tmp_path):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from store.base import Base

    engine = create_engine(f"sqlite:///{tmp_path / 'limits.db'}")
    Base.metadata.create_all(engine)
    settings = Settings(max_request_epochs=20, max_queued_epochs=30)
    with Session(engine) as session:
        limits.check_epochs(settings, session, epochs=20, field="seeds")
        with pytest.raises(InvalidRequest) as refused:
            limits.check_epochs(settings, session, epochs=21, field="seeds")
        (error,) = refused.value.errors
        assert error.field == "seeds" and "STACKLAB_MAX_REQUEST_EPOCHS" in error.reason
        with pytest.raises(InvalidRequest) as refused:
            limits.check_epochs(
                settings.model_copy(update={"max_queued_epochs": 19}),
                session,
                epochs=20,
                field="seeds",
            )
        (error,) = refused.value.errors
        assert error.field == "queued_epochs" and "STACKLAB_MAX_QUEUED_EPOCHS" in error.reason
