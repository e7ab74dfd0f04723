"""Queue ETAs against hand-computed values (backend/runs/eta.py): planned images at the
model's measured images/s (the default before anything was measured), refined by a running
run's own epochs, and one unknown length blanking nothing after it.

demo-tiny has 60 training images: 6 (10%, rounded up) validate, 54 train; validation
images count at a third of a training image's cost. Each test uses its own kind and model,
so the rates one test logs never reach another's expectation.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from store.db import session_scope
from store.runs.models import Run
from tests.web.factories import make_run, make_worker

TRAIN, VAL = 54, 6


def epoch(rate: float) -> float:
    return TRAIN / rate + VAL / (3 * rate)


@contextmanager
def tidy(*created: list[int]):
    """Runs a test queues leave the queue when it ends, so the next test's queue is its own."""
    try:
        yield
    finally:
        with session_scope() as session:
            for run_id in [r for runs in created for r in runs]:
                session.get(Run, run_id).status = "cancelled"


def panel(client) -> dict:
    make_worker("eta-worker", device="GPU:0")  # the one worker online, idle
    response = client.get("/api/queue")
    assert response.status_code == 200, response.text
    return response.json()


def entry(data: dict, run_id: int) -> dict:
    return next(q for q in data["queued"] + data["running"] if q["id"] == run_id)


PRETRAIN = {"ae01": {"epochs": 2}, "ae02": {"epochs": 3}, "ae03": {"epochs": 4}}
# Nothing of the pretrain's models measured yet: 400, 250 and 150 images/s (DEFAULT_RATES).
PRETRAIN_SECONDS = 2 * epoch(400) + 3 * epoch(250) + 4 * epoch(150)


def test_before_any_run_of_a_kind_finished_the_queue_uses_its_models_default(client):
    run_id = make_run("pretrain", "queued", params=PRETRAIN)
    with tidy([run_id]):
        found = entry(panel(client), run_id)
    assert found["estimated_seconds"] == pytest.approx(PRETRAIN_SECONDS)
    assert found["estimate_source"] == "default"
    assert found["starts_in_seconds"] == 0 and found["finishes_in_seconds"] == pytest.approx(
        PRETRAIN_SECONDS
    )


def test_measured_images_per_second_replace_the_default_leaving_out_first_epochs(client):
    # The first epoch traces and compiles (20 img/s); then 100 and 120: median 110.
    make_run("finetune", metrics={"finetune/images_per_sec": [20.0, 100.0, 120.0]})
    # Still training counts too (its one epoch is all it has): 110 stays the median.
    make_run("finetune", "cancelled", metrics={"finetune/images_per_sec": [110.0]})
    run_id = make_run("finetune", "queued", params={"epochs": 10})
    with tidy([run_id]):
        found = entry(panel(client), run_id)
    assert found["estimated_seconds"] == pytest.approx(10 * epoch(110))
    assert found["estimate_source"] == "measured"


def test_rates_measured_on_the_online_workers_device_come_first(client):
    single = {"encoder": "single"}
    make_run(
        "finetune", params=single, device="GPU:0", metrics={"finetune/images_per_sec": [900.0]}
    )
    make_run("finetune", params=single, device="CPU", metrics={"finetune/images_per_sec": [30.0]})
    quick = {"epochs": 5, "max_train_images": 40, "batch_size": 10, "steps_per_epoch": 3}
    run_id = make_run("finetune", "queued", params={**single, **quick})
    with tidy([run_id]):
        found = entry(panel(client), run_id)
    # A quick run: 40 images, 4 of them validate; 3 batches of 10 train an epoch.
    # 900 img/s measured on GPU:0 (the online worker's device), not the CPU's 30.
    assert found["estimated_seconds"] == pytest.approx(5 * (30 / 900 + 4 / (3 * 900)))


def test_one_unknown_length_says_unknown_and_blanks_no_run_after_it(client):
    first = make_run("pretrain", "queued", params=PRETRAIN, name="eta-first")
    unknown = make_run("pretrain", "queued", name="eta-unknown")
    with session_scope() as session:  # params stored under older rules: no plan, no estimate
        session.get(Run, unknown).params = {"ae01": {"epochs": -1}}
    last = make_run("pretrain", "queued", params=PRETRAIN, name="eta-last")
    with tidy([first, unknown, last]):
        data = panel(client)
        page = client.get("/runs").text
    found = {run_id: entry(data, run_id) for run_id in (first, unknown, last)}
    assert found[unknown]["estimated_seconds"] is None and found[unknown]["estimate_source"] is None
    assert found[unknown]["starts_in_seconds"] == pytest.approx(PRETRAIN_SECONDS)
    assert found[unknown]["finishes_in_seconds"] is None
    # The run after it still gets times, summed without the unknown one, and says so.
    assert found[last]["starts_in_seconds"] == pytest.approx(PRETRAIN_SECONDS)
    assert found[last]["finishes_in_seconds"] == pytest.approx(2 * PRETRAIN_SECONDS)
    assert found[last]["leaves_out"] == [unknown] and found[first]["leaves_out"] == []
    assert data["unknown"] == [unknown] and f"#{unknown}" in data["note"]
    assert "length unknown" in page and f"Length unknown for run #{unknown}" in page


def test_a_running_run_refines_its_eta_with_its_own_epochs(client):
    # A tune of AE02, 2 trials x 3 epochs: trial-1 is in its 2nd epoch, 4 of 6 epochs done.
    params = {"stage": "ae02", "n_trials": 2, "epochs": 3}
    progress = {"stage": "trial-1", "epoch": 2, "epochs": 3, "step": 0, "steps": 1}
    rates = {"trial-0/images_per_sec": [10.0, 40.0, 40.0], "trial-1/images_per_sec": [10.0]}
    running = make_run("tune", "running", params=params, progress=progress, metrics=rates)
    # No batch reported yet: its whole estimate (default 250 img/s) less the time it ran.
    fresh = make_run("tune", "running", params={**params, "stage": "ae03"})
    with tidy([running, fresh]):
        data = panel(client)
    mine = entry(data, running)
    # trial-0's first epoch is left out: 40, 40 and trial-1's lone 10 -> median 40 img/s.
    assert mine["eta_seconds"] == pytest.approx(2 * epoch(40))
    assert mine["eta_source"] == "own epochs"
    other = entry(data, fresh)
    assert other["eta_source"] == "default"
    assert 0 < other["eta_seconds"] <= 6 * epoch(150)
