"""The jobs end to end on tiny demo data: pretrain, finetune, tune, evaluate, export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobspec.params import (
    EarlyStoppingConfig,
    FinetuneConfig,
    PretrainConfig,
    StageConfig,
    TuneConfig,
)
from worker.ml import artifacts
from worker.ml.finetune import finetune
from worker.ml.pretrain import pretrain
from worker.ml.reporting import Reporter
from worker.ml.tune import tune

pytestmark = pytest.mark.slow


class Recorder(Reporter):
    """Keeps everything a job reports; stops after `stop_after` batches when set."""

    def __init__(self, stop_after: int | None = None):
        self.batches, self.epochs, self.stages, self.trials = [], [], [], []
        self.stop_after = stop_after

    def batch_ended(self, progress):
        self.batches.append(progress)

    def epoch_ended(self, stage, epoch, metrics):
        self.epochs.append((stage, epoch, metrics))

    def stage_ended(self, stage, summary):
        self.stages.append((stage, summary))

    def trial_ended(self, trial):
        self.trials.append(trial)

    def should_stop(self):
        return self.stop_after is not None and len(self.batches) >= self.stop_after


def test_pretrain_writes_every_stage_and_the_stacked_ae(pretrained_dir, demo_small):
    manifest = json.loads((pretrained_dir / "pretrain.json").read_text())
    assert manifest["trained_stages"] == ["ae01", "ae02", "ae03"]
    assert manifest["test_reconstruction_loss"] > 0
    report = manifest["reconstruction"]
    assert manifest["test_reconstruction_loss"] == report["stages"]["ae03"]["mse"]
    assert set(report["stages"]) == {"ae01", "ae02", "ae03"}
    assert set(report["baselines"]) == {"image_mean_colour", "dataset_mean_image"}
    # The seed's decoders end in ReLU: some output pixels are exactly 0.
    assert 0 < report["stages"]["ae01"]["zero_fraction"] < 1
    assert {len(errors) for errors in manifest["probe_errors"].values()} == {10}
    for name in ("ae01", "ae02", "ae03", "stacked_ae"):
        assert (pretrained_dir / f"{name}.weights.h5").stat().st_size > 0
        assert (pretrained_dir / f"{name}.keras").stat().st_size > 0
    probes = np.load(pretrained_dir / "reconstructions.npz")
    assert set(probes.files) == {"input", "ae01", "ae02", "ae03"}
    assert probes["ae03"].shape == (10, 32, 32, 3) and probes["ae03"].dtype == np.uint8
    assert (pretrained_dir / "reconstructions.png").exists()


def test_pretrain_then_finetune_learns_above_chance(pretrained_dir, demo_small, tmp_path):
    reporter = Recorder()
    # Few steps: BN's moving averages need momentum 0.9 to settle (see FinetuneConfig).
    config = FinetuneConfig(encoder="single", epochs=3, batch_size=16, bn_momentum=0.9)
    result = finetune(
        demo_small, config, out_dir=tmp_path, pretrained_dir=pretrained_dir, reporter=reporter
    )
    assert result.training["pretrained_layers"] == 2
    assert result.evaluation.accuracy > 0.25  # chance is 0.10
    assert result.evaluation.confusion_matrix.sum() == len(demo_small.y_test)
    assert [e[1] for e in reporter.epochs] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(reporter.epochs[0][2])
    last = reporter.batches[-1]
    assert (last.epoch, last.step) == (3, last.steps) and last.images_per_sec > 0
    for name in (
        "classifier.weights.h5",
        "classifier.keras",
        "evaluation.json",
        "confusion_matrix.png",
        "predictions.npz",
        "metrics.csv",
        "finetune.json",
    ):
        assert (tmp_path / name).exists(), name


def test_exported_classifier_loads_back_with_identical_predictions(
    pretrained_dir, demo_small, tmp_path
):
    config = FinetuneConfig(encoder="single", epochs=1, batch_size=64, augment=True)
    result = finetune(demo_small, config, out_dir=tmp_path, pretrained_dir=pretrained_dir)
    x = demo_small.x_test[:8].astype("float32") / 255
    want = np.asarray(result.model.predict_on_batch(x))
    loaded = artifacts.load_model(tmp_path / "classifier.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(x)), want, atol=1e-5)
    from worker.ml.models import build_single_classifier

    rebuilt = artifacts.load_weights(build_single_classifier(3), tmp_path / "classifier.weights.h5")
    np.testing.assert_allclose(np.asarray(rebuilt.predict_on_batch(x)), want, atol=1e-5)


def test_early_stopping_restores_the_best_epoch(demo_small, tmp_path):
    # patience 0 with a tiny lr: the first epoch that fails to improve ends training.
    config = FinetuneConfig(
        encoder="scratch",
        architecture="single",
        epochs=6,
        batch_size=64,
        learning_rate=0.5,
        optimizer="sgd",
        early_stopping=EarlyStoppingConfig(patience=0),
    )
    reporter = Recorder()
    result = finetune(demo_small, config, out_dir=tmp_path, reporter=reporter)
    val_losses = [m["val_loss"] for _, _, m in reporter.epochs]
    best = int(np.argmin(val_losses)) + 1
    assert result.training["best_epoch"] == best
    assert result.training["best_value"] == pytest.approx(min(val_losses))
    if result.training["stopped_early"]:
        assert result.training["epochs_run"] < 6


def test_cancel_stops_pretrain_at_the_next_batch_and_keeps_what_it_has(demo_small, tmp_path):
    reporter = Recorder(stop_after=3)
    stage = StageConfig(epochs=5, batch_size=32)
    result = pretrain(
        demo_small,
        PretrainConfig(ae01=stage, ae02=stage, ae03=stage),
        out_dir=tmp_path,
        reporter=reporter,
    )
    assert result.cancelled
    assert len(reporter.batches) == 3
    assert list(result.models) == ["ae01"]
    manifest = json.loads((tmp_path / "pretrain.json").read_text())
    # ae01's weights are kept, but a cut-short stage is not offered for fine-tuning.
    assert manifest["cancelled"] and manifest["trained_stages"] == []
    assert manifest["partial_stages"] == ["ae01"]
    assert (tmp_path / "ae01.weights.h5").exists() and not (tmp_path / "ae02.keras").exists()


def test_cancelled_finetune_keeps_best_weights_and_skips_scoring(demo_small, tmp_path):
    steps = -(-int(len(demo_small.y_train) * 0.9) // 64)
    reporter = Recorder(stop_after=steps + 2)  # into the second epoch
    config = FinetuneConfig(encoder="scratch", architecture="single", epochs=5, batch_size=64)
    result = finetune(demo_small, config, out_dir=tmp_path, reporter=reporter)
    assert result.cancelled and result.evaluation is None
    assert result.training["best_epoch"] == 1
    assert (tmp_path / "classifier.weights.h5").exists()


def test_tune_searches_the_grid_and_a_second_run_joins_the_study(demo_small, tmp_path):
    data = demo_small.subset(n_train=120, n_test=20, seed=0)
    config = TuneConfig(
        n_trials=2, epochs=2, batch_size=32, kernel_sizes=[3, 5], optimizers=["adam", "sgd"]
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    reporter = Recorder()
    first = tune(data, config, out_dir=tmp_path / "a", storage=storage, reporter=reporter)
    second = tune(data, config, out_dir=tmp_path / "b", storage=storage)
    assert len(reporter.trials) == 2
    assert len(second.trials) == 4
    assert {(t["params"]["kernel_size"], t["params"]["optimizer"]) for t in second.trials} == {
        (3, "adam"),
        (3, "sgd"),
        (5, "adam"),
        (5, "sgd"),
    }
    assert first.best_params["kernel_size"] in (3, 5)
    assert second.best_value <= first.best_value
    assert set(second.best_params) == {"kernel_size", "optimizer", "learning_rate"}


def test_tuning_ae02_needs_and_uses_a_pretrained_ae01(demo_small, pretrained_dir, tmp_path):
    data = demo_small.subset(n_train=100, n_test=20, seed=0)
    config = TuneConfig(
        stage="ae02", n_trials=1, epochs=1, batch_size=50, kernel_sizes=[3], optimizers=["adam"]
    )
    with pytest.raises(ValueError, match="pretrain output folder"):
        tune(data, config, out_dir=tmp_path)
    result = tune(data, config, out_dir=tmp_path, pretrained_dir=pretrained_dir)
    assert result.trials[0]["state"] == "complete"
