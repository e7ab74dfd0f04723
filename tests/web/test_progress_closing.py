"""A stage after a run's planned ones (a pretrain's probe) keeps the progress bar full: the
worker marks it closing and every reader of progress (the run page's JSON, the table) says
100%, never the probe's own 0-100% after the last autoencoder's 100%."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from backend.runs.views import progress_of
from jobspec.learned import PROBE_STAGE
from store.settings import get_settings
from worker.ml.reporting import Progress
from worker.recorder import StoreRecorder

PLAN = {"ae01": 2, "ae02": 2, "ae03": 2}


def _progress_after(stage: str, step: int, steps: int) -> dict:
    recorder = StoreRecorder(1, 1, settings=get_settings(), stage_plan=PLAN)
    recorder.stage_started(stage, epochs=1, steps=steps, images=100)
    recorder.batch_ended(Progress(stage, 1, 1, step, steps, 50.0, 3.0))
    return progress_of(SimpleNamespace(progress=recorder._progress))


@pytest.mark.parametrize("step", [1, 3, 6])
def test_a_stage_after_the_plan_keeps_the_bar_full_at_every_step(step):
    p = _progress_after(PROBE_STAGE, step, 6)
    assert p["closing"] is True and p["fraction"] == 1.0
    assert (p["stage_index"], p["stage_count"]) == (3, 3)


def test_a_planned_stage_is_never_closing():
    p = _progress_after("ae02", 1, 4)
    assert "closing" not in p
    assert (p["stage_index"], p["stage_count"]) == (2, 3)
    assert 1 / 3 < p["fraction"] < 2 / 3
