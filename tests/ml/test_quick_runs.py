"""Quick runs: a stratified cap on the training images and a cap on batches per epoch."""

from __future__ import annotations

import numpy as np
import pytest

from jobspec import budget
from jobspec.learned import PROBE_STAGE
from jobspec.params import FinetuneConfig, PretrainConfig, StageConfig, TuneConfig, is_quick
from worker.ml.datasets.demo import make_demo
from worker.ml.finetune import finetune
from worker.ml.pipeline import make_input
from worker.ml.pretrain import pretrain
from worker.ml.reporting import Reporter
from worker.ml.tune import tune


class Steps(Reporter):
    """Counts the batches each stage (or trial) ran per epoch."""

    def __init__(self):
        self.planned: dict[str, int] = {}
        self.images: dict[str, int] = {}
        self.batches: dict[tuple[str, int], int] = {}

    def stage_started(self, stage, *, epochs, steps, images):
        self.planned[stage] = steps
        self.images[stage] = images

    def batch_ended(self, progress):
        key = (progress.stage, progress.epoch)
        self.batches[key] = self.batches.get(key, 0) + 1


@pytest.fixture(scope="module")
def skewed():
    """300 training images, the last class a fifth the size of the first."""
    return make_demo(seed=0, n_train=300, n_test=40, imbalance=0.2)


def test_max_train_images_draws_a_stratified_sample_before_the_split(skewed):
    split = skewed.split_validation(fraction=0.2, seed=3, max_images=120)
    assert len(split.y_train) + len(split.y_val) == 120
    assert len(split.y_val) == 24  # the fraction is of the sample, not of the data set
    drawn = np.bincount(np.concatenate([split.y_train, split.y_val]), minlength=10)
    share = np.bincount(skewed.y_train, minlength=10) / len(skewed.y_train)
    # Two of each class are kept first (so every class can be split); the rest follow
    # the data set's proportions to within one image.
    assert np.all(np.abs(drawn - np.maximum(2, share * 120)) <= 2), (drawn, share * 120)
    assert drawn[0] > 2 * drawn[-1]  # the imbalance survives
    # Validation indices count the whole data set's images, so split checks still compare.
    np.testing.assert_array_equal(skewed.x_train[split.val_indices], split.x_val)
    again = skewed.split_validation(fraction=0.2, seed=3, max_images=120)
    assert again.fingerprint == split.fingerprint  # the same seed, the same sample
    other = skewed.split_validation(fraction=0.2, seed=4, max_images=120)
    assert other.fingerprint != split.fingerprint


def test_no_cap_or_a_cap_above_the_data_set_is_the_ordinary_split(skewed):
    plain = skewed.split_validation(fraction=0.2, seed=1)
    for cap in (None, 300, 10_000):
        split = skewed.split_validation(fraction=0.2, seed=1, max_images=cap)
        assert split.fingerprint == plain.fingerprint
        np.testing.assert_array_equal(split.y_train, plain.y_train)


def test_steps_per_epoch_takes_the_first_batches_of_each_epochs_own_order():
    x = np.arange(23 * 4, dtype=np.uint8).reshape(23, 2, 2, 1)
    y = np.arange(23) % 3
    full = make_input(x, y, batch_size=5, shuffle=True, seed=7)
    capped = make_input(x, y, batch_size=5, shuffle=True, seed=7, max_steps=2)
    later = make_input(x, y, batch_size=5, shuffle=True, seed=7, max_steps=2, start_epoch=2)
    assert (capped.steps, capped.images) == (2, 10)
    assert make_input(x, y, batch_size=5, shuffle=True, max_steps=99).steps == 5
    whole = [b for _, b in zip(range(4 * full.steps), iter(full.data), strict=False)]
    limited = [b for _, b in zip(range(4 * 2), iter(capped.data), strict=False)]
    resumed = [b for _, b in zip(range(2 * 2), iter(later.data), strict=False)]
    for epoch in range(4):
        for step in range(2):
            want = whole[epoch * full.steps + step]
            np.testing.assert_array_equal(
                np.asarray(want[0]), np.asarray(limited[2 * epoch + step][0])
            )
    for want, got in zip(limited[4:], resumed, strict=True):  # a resume sees the same batches
        np.testing.assert_array_equal(np.asarray(want[0]), np.asarray(got[0]))


def test_quick_fields_are_optional_and_off_by_default():
    for model in (PretrainConfig, TuneConfig, FinetuneConfig):
        config = model()
        assert config.max_train_images is None and config.steps_per_epoch is None
        assert not is_quick(config)
        assert is_quick(model(steps_per_epoch=3)) and is_quick(model(max_train_images=50))


@pytest.mark.slow
def test_a_quick_finetune_runs_only_its_steps_on_its_sample(demo_small, tmp_path):
    config = FinetuneConfig(
        encoder="scratch",
        architecture="single",
        epochs=2,
        batch_size=8,
        validation_fraction=0.2,
        max_train_images=100,
        steps_per_epoch=3,
    )
    steps = Steps()
    result = finetune(demo_small, config, out_dir=tmp_path, reporter=steps)
    assert result.split["n_train"] + result.split["n_val"] == 100
    assert steps.planned == {"finetune": 3} and steps.images == {"finetune": 24}
    # What an ETA can know before the run: the same images per epoch.
    assert budget.images_per_epoch("finetune", config, len(demo_small.y_train)) == steps.images
    assert steps.batches == {("finetune", 1): 3, ("finetune", 2): 3}
    assert result.training["epochs_run"] == 2
    assert result.evaluation is not None  # scored on the whole test set


@pytest.mark.slow
def test_quick_pretrain_and_tune_cap_every_stage_and_trial(demo_small, tmp_path):
    stage = StageConfig(epochs=1, batch_size=16)
    config = PretrainConfig(
        ae01=stage, ae02=stage, ae03=stage, validation_fraction=0.25, max_train_images=80,
        steps_per_epoch=2,
    )  # fmt: skip
    steps = Steps()
    result = pretrain(demo_small, config, out_dir=tmp_path / "pretrain", reporter=steps)
    trained = {s: n for s, n in steps.planned.items() if s != PROBE_STAGE}
    assert trained == {"ae01": 2, "ae02": 2, "ae03": 2}
    images = {s: n for s, n in steps.images.items() if s != PROBE_STAGE}
    assert budget.images_per_epoch("pretrain", config, len(demo_small.y_train)) == images
    assert steps.planned[PROBE_STAGE] > 0  # the probe stage reports its progress
    assert result.split["n_train"] + result.split["n_val"] == 80
    tuned = TuneConfig(
        n_trials=1, epochs=1, batch_size=16, kernel_sizes=[3], optimizers=["adam"],
        validation_fraction=0.25, max_train_images=80, steps_per_epoch=1, pruning=False,
    )  # fmt: skip
    steps = Steps()
    tune(demo_small, tuned, out_dir=tmp_path / "tune", reporter=steps)
    assert steps.planned == {"trial-0": 1}
    assert steps.batches == {("trial-0", 1): 1}
