"""What a fine-tune's summary says: imbalance-aware metrics per epoch, whether early
stopping really stopped it, the epochs planned; and scratch classifiers' kernel sizes."""

from __future__ import annotations

import numpy as np
import pytest

from jobspec.params import EarlyStoppingConfig, FinetuneConfig
from worker.ml import finetune as finetune_module
from worker.ml.finetune import build_model, finetune
from worker.ml.models import iter_weighted_layers
from worker.ml.reporting import Reporter


class Recorder(Reporter):
    """Keeps the epochs' metrics; cancels at the first batch of epoch `stop_at` if set."""

    def __init__(self, stop_at: int | None = None):
        self.epochs, self.stop_at, self._epoch = [], stop_at, 0

    def batch_ended(self, progress):
        self._epoch = progress.epoch

    def epoch_ended(self, stage, epoch, metrics):
        self.epochs.append(metrics)

    def should_stop(self):
        return self._epoch == self.stop_at


@pytest.fixture(scope="module")
def tiny(demo_small):
    """30 train / 10 validation images."""
    return demo_small.subset(n_train=40, n_test=10, seed=0)


def _config(epochs: int, **stopping) -> FinetuneConfig:
    # min_delta 10: no epoch after the first counts as better, so patience decides alone.
    return FinetuneConfig(
        encoder="scratch",
        architecture="single",
        epochs=epochs,
        batch_size=10,
        validation_fraction=0.25,
        early_stopping=EarlyStoppingConfig(min_delta=10.0, **stopping),
    )


@pytest.mark.slow
def test_patience_running_out_on_the_last_epoch_is_not_stopping_early(tiny, tmp_path, monkeypatch):
    stoppers = []

    def keep(config):
        stoppers.append(original(config))
        return stoppers[-1]

    original = finetune_module._early_stopping
    monkeypatch.setattr(finetune_module, "_early_stopping", keep)
    reporter = Recorder()
    result = finetune(tiny, _config(3, patience=2), out_dir=tmp_path, reporter=reporter)
    assert stoppers[0].stopped_epoch == 2  # Keras' own flag: patience ran out in epoch 3
    training = result.training
    assert training["epochs_run"] == 3 and training["epochs_planned"] == 3
    assert training["stopped_early"] is False
    assert training["warnings"] == []
    new = {"balanced_accuracy", "macro_f1", "val_balanced_accuracy", "val_macro_f1"}
    assert new <= set(reporter.epochs[0]) and new <= set(training["final"])


@pytest.mark.slow
def test_early_stopping_on_macro_f1_stops_early_and_keeps_the_best_epoch(tiny, tmp_path):
    reporter = Recorder()
    config = _config(4, patience=1, monitor="val_macro_f1")
    result = finetune(tiny, config, out_dir=tmp_path, reporter=reporter)
    training = result.training
    assert training["stopped_early"] is True
    assert (training["epochs_run"], training["epochs_planned"]) == (2, 4)
    assert training["best_epoch"] == 1 and training["monitor"] == "val_macro_f1"
    assert training["best_value"] == pytest.approx(reporter.epochs[0]["val_macro_f1"])


@pytest.mark.slow
def test_a_cancelled_run_is_not_stopped_early(tiny, tmp_path):
    # Patience 0 would also stop after epoch 2, the epoch the cancel cuts short.
    result = finetune(tiny, _config(5, patience=0), out_dir=tmp_path, reporter=Recorder(stop_at=2))
    assert result.cancelled and result.training["epochs_run"] == 2
    assert result.training["stopped_early"] is False


def _kernel_sizes(model) -> dict[str, int]:
    return {
        layer.name: layer.kernel.shape[0]
        for layer in iter_weighted_layers(model)
        if layer.name.startswith("Dense_AE")
    }


def test_a_scratch_classifier_takes_one_kernel_size_per_stage():
    config = FinetuneConfig(encoder="scratch", kernel_sizes=(3, 5, 7))
    model, copied = build_model(config, 10, None)
    assert copied == []
    assert _kernel_sizes(model) == {"Dense_AE01_1": 3, "Dense_AE02_1": 5, "Dense_AE03_1": 7}
    single = FinetuneConfig(encoder="scratch", architecture="single", kernel_sizes=(7, 3, 3))
    assert _kernel_sizes(build_model(single, 10, None)[0]) == {"Dense_AE01_1": 7}
    plain = FinetuneConfig(encoder="scratch", kernel_size=5)
    assert set(_kernel_sizes(build_model(plain, 10, None)[0]).values()) == {5}


@pytest.mark.slow
def test_pretrained_and_scratch_arms_of_one_seed_start_from_the_same_head(pretrained_dir):
    """What a pretraining study relies on: only the encoder differs between its arms."""
    from worker.ml.training import runtime

    heads = {}
    for encoder, changes in (("scratch", {"kernel_sizes": (3, 3, 3)}), ("stacked", {})):
        config = FinetuneConfig(encoder=encoder, seed=4, **changes)
        with runtime(config.runtime, config.seed):
            model, copied = build_model(config, 10, pretrained_dir)
        heads[encoder] = model.layers[-1].get_weights()
    assert copied  # the stacked arm did load the pretrained encoder
    for scratch, pretrained in zip(heads["scratch"], heads["stacked"], strict=True):
        np.testing.assert_array_equal(scratch, pretrained)
