"""The launch's forecast of pretraining images in a study's validation, and the study's sum
of what its runs counted (store/runs/leaks.py); plain rows, no database."""

from __future__ import annotations

import pytest

from store.runs import leaks
from store.runs.models import Run

N_TRAIN = 2200


def _pretrain(**params) -> Run:
    return Run(id=7, params={"seed": 0, "validation_fraction": 0.1, **params})


def _study(**params) -> dict:
    return {"seed": 3, "validation_fraction": 0.1, "max_train_images": None, **params}


def test_a_quick_pretrain_and_a_full_study_with_the_same_seed_are_warned():
    """The issue's case, which comparing seed and fraction missed."""
    warning = leaks.launch_warning(
        parent=_pretrain(max_train_images=600), params=_study(), split_seed=0, n_train=N_TRAIN
    )
    assert warning is not None
    assert warning.startswith(
        "Pretrain run #7 trained on a quick-run sample of 600 of the 2,200 training images, "
        "split seed 0, 10% validation; this study splits all 2,200 training images, split "
        "seed 0, 10% validation: some of the study's validation images were training images"
    )


@pytest.mark.parametrize(
    ("parent", "study", "split_seed"),
    [
        ({}, {}, 0),  # full and full, seed and fraction equal
        ({"max_train_images": 600}, {"max_train_images": 600}, 0),  # the same quick sample
        ({"max_train_images": 5000}, {}, 0),  # a "quick" run above the data set's size
        ({"split_seed": 4, "seed": 9}, {}, 4),  # the pretrain's split seed, not its seed
    ],
)
def test_the_same_draw_of_the_same_sample_is_not_warned(parent, study, split_seed):
    assert (
        leaks.launch_warning(
            parent=_pretrain(**parent),
            params=_study(**study),
            split_seed=split_seed,
            n_train=N_TRAIN,
        )
        is None
    )


@pytest.mark.parametrize(
    ("study", "split_seed", "said"),
    [
        ({}, 1, "split seed 1"),
        ({"validation_fraction": 0.2}, 0, "20% validation"),
        ({"max_train_images": 600}, 0, "a quick-run sample of 600"),
        ({}, None, "each seed its own split"),
    ],
)
def test_any_other_draw_is_warned_naming_it(study, split_seed, said):
    warning = leaks.launch_warning(
        parent=_pretrain(), params=_study(**study), split_seed=split_seed, n_train=N_TRAIN
    )
    assert warning is not None and said in warning.split(";")[1]


def test_a_single_fine_tune_is_warned_as_a_run():
    params = {**_study(), "split_seed": None, "seed": 5}  # splits by its own seed
    warning = leaks.run_warning(parent=_pretrain(), params=params, n_train=N_TRAIN)
    assert (
        warning is not None
        and "; this run splits all 2,200 training images, split seed 5" in warning
    )
    assert "some of the run's validation images" in warning


def _counted(validation: int, test: int = 0) -> Run:
    overlap = {"validation": validation, "n_validation": 220, "test": test, "n_test": 1000}
    return Run(result={"training": {"pretrain_overlap": overlap}})


def test_the_study_sums_what_its_runs_counted():
    runs = [_counted(95), _counted(95), _counted(0), Run(result={"training": {}}), Run()]
    assert leaks.study_warnings(runs, 7) == [
        "In 2 of 3 runs counted, 95 of 220 validation images were training images of pretrain "
        "run #7: their validation scores, and the epochs early stopping kept, are optimistic."
    ]
    spread = leaks.study_warnings([_counted(90, 3), _counted(95)], None)
    assert spread[0].startswith("In 2 of 2 runs counted, 90 to 95 of 220 validation images")
    assert spread[1] == (
        "In 1 of 2 runs counted, 3 of 1,000 test images were training images of their "
        "pretrain: their test scores are optimistic."
    )
    assert leaks.study_warnings([_counted(0)], 7) == []


def test_a_run_on_its_pretrains_split_or_without_a_split_is_not_warned():
    same = {**_study(), "split_seed": 0}
    assert leaks.run_warning(parent=_pretrain(), params=same, n_train=N_TRAIN) is None
    assert leaks.run_warning(parent=_pretrain(), params={"seed": 3}, n_train=N_TRAIN) is None
