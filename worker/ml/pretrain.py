"""Layer-wise pretraining: AE01 on images, AE02 on AE01's features, AE03 on AE02's."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import ops

from jobspec.builtin_kinds import PRETRAIN
from jobspec.params import PretrainConfig, StageConfig
from jobspec.stages import STAGES
from worker.ml import artifacts, figures, probe
from worker.ml.callbacks import FitState
from worker.ml.checkpoint import (
    Checkpoint,
    capture,
    capture_training,
    check_resume,
    restore,
    restore_training,
    run_key,
)
from worker.ml.datasets.dataset import Dataset
from worker.ml.models import (
    build_autoencoder,
    build_stacked_ae,
    encoder_of,
    set_bn_momentum,
    transfer_weights,
)
from worker.ml.pipeline import make_input
from worker.ml.reconstruction import (
    probe_indices,
    probe_reconstructions,
    reconstruction_report,
)
from worker.ml.reporting import Reporter
from worker.ml.splits import image_sets, image_sets_record, write_image_sets
from worker.ml.training import fit, make_optimizer, runtime


class FeatureReconstruction(keras.Model):
    """Trains one autoencoder to reconstruct what the frozen earlier encoders make of x.

    The targets are computed inside the step, so no copy of the (large) feature maps is
    ever stored; for AE01 the "features" are the images themselves.
    """

    def __init__(self, autoencoder: keras.Model, frozen: list[keras.Model], **kwargs):
        super().__init__(**kwargs)
        self.autoencoder = autoencoder
        self.frozen = frozen
        for encoder in frozen:
            encoder.trainable = False

    def features(self, x):
        for encoder in self.frozen:
            x = encoder(x, training=False)
        return x

    def call(self, x, training=False):
        target = self.features(x)
        return target, self.autoencoder(target, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        target, reconstruction = y_pred
        return ops.mean(
            ops.square(ops.cast(reconstruction, "float32") - ops.cast(target, "float32"))
        )


@dataclass
class PretrainResult:
    """Trained autoencoders, what each stage did, and where the files went."""

    models: dict[str, keras.Model]
    stages: dict[str, dict]
    test_reconstruction_loss: float | None
    probes: dict[str, np.ndarray]
    cancelled: bool
    files: list[Path] = field(default_factory=list)
    # Test MSE, PSNR and exact zeros per depth beside two baselines (reconstruction.py);
    # None for a cancelled run.
    reconstruction: dict | None = None
    probe_errors: dict[str, list[float]] = field(default_factory=dict)
    split: dict = field(default_factory=dict)  # Split.record() of the split trained on
    learned: dict | None = None  # the probe stage's summary (probe.py); None: it did not run


def pretrain(
    dataset: Dataset,
    config: PretrainConfig,
    *,
    out_dir: Path,
    reporter: Reporter | None = None,
    resume: Checkpoint | None = None,
    probe_budget: probe.ProbeBudget | None = None,
) -> PretrainResult:
    """Train AE01 -> AE02 -> AE03, assemble the stacked AE, export all of it to out_dir,
    then probe what each depth learned (worker/ml/probe.py, within `probe_budget`).

    Only the training part of the split trains the autoencoders: its validation part
    scores them and the test images are reconstructed only after training. With `resume`,
    stages finished before the checkpoint's come from it untrained, and its stage continues
    after its epoch.
    """
    reporter = reporter or Reporter()
    out_dir = Path(out_dir)
    run = _Run(resume, run_key(config, dataset))
    split = dataset.split_validation(
        fraction=config.validation_fraction, seed=config.split, max_images=config.max_train_images
    )
    cancelled = False
    with runtime(config.runtime, config.seed):
        for stage in STAGES:
            settings = config.stage(stage)
            autoencoder = build_autoencoder(stage, settings.kernel_size, config.decoder_output)
            set_bn_momentum(autoencoder, config.bn_momentum)
            if run.restore_finished(stage, autoencoder):
                continue
            frozen = [encoder_of(run.models[s]) for s in STAGES[: STAGES.index(stage)]]
            fitted = _train_stage(
                stage, autoencoder, frozen, settings, split, config, reporter, run
            )
            run.finish(stage, autoencoder, fitted)
            reporter.stage_ended(stage, run.stages[stage])
            _report_reconstructions(reporter, run.models, dataset, config.probe_images)
            if fitted.cancelled:
                cancelled = True
                break
        models = run.models
        result = PretrainResult(models, run.stages, None, {}, cancelled, split=split.record())
        if not cancelled:
            result.reconstruction = reconstruction_report(models, dataset.x_test, split.x_train)
            result.test_reconstruction_loss = result.reconstruction["stages"][STAGES[-1]]["mse"]
            models["stacked_ae"] = assemble_stacked_ae(
                models, config.kernel_sizes, config.decoder_output
            )
        probes = dataset.x_test[probe_indices(dataset.y_test, config.probe_images)]
        result.probes, result.probe_errors = probe_reconstructions(models, probes)
    # What the encoders were fitted to, quick-run sample included: a fine-tune on them
    # compares it with its own validation and test images (splits.check_pretrain).
    trained = image_sets(dataset, split, max_images=config.max_train_images, tested=False)
    result.files = _export(out_dir, result, run.rows, config, dataset, trained)
    result.files.append(write_image_sets(out_dir, dataset, trained))
    # --- What the autoencoders learned (worker/ml/probe.py): a last stage, once all trained.
    if not cancelled:
        learned = probe.after_pretrain(
            models, split, dataset, config, out_dir=out_dir, budget=probe_budget, reporter=reporter
        )
        result.learned, result.cancelled = learned.summary, learned.cancelled
        result.files += learned.files
    return result


class _Run:
    """The stages done so far, this attempt's and those a checkpoint brought back."""

    def __init__(self, resume: Checkpoint | None, key: dict):
        check_resume(resume, stages=STAGES, key=key, config_type=PretrainConfig)
        self.resume, self.key = resume, key
        self.models: dict[str, keras.Model] = {}
        self.stages: dict[str, dict] = {}
        self.histories: dict[str, dict[str, list[float]]] = {}

    @property
    def rows(self) -> list[dict]:
        return [row for s, h in self.histories.items() for row in artifacts.history_rows(s, h)]

    def restore_finished(self, stage: str, autoencoder: keras.Model) -> bool:
        """Load a stage the checkpoint had finished; False when it must (still) train."""
        resume = self.resume
        if resume is None or STAGES.index(stage) >= STAGES.index(resume.stage):
            return False
        restore(autoencoder.variables, resume.arrays, stage)
        self.models[stage] = autoencoder
        self.stages[stage] = resume.state["stages"][stage]
        self.histories[stage] = resume.state["histories"][stage]
        return True

    def start(self, stage: str) -> FitState | None:
        """Where the checkpoint's own stage stood; None for a stage that starts afresh."""
        if self.resume is None or self.resume.stage != stage:
            return None
        return FitState.from_json(self.resume.state["fit"])

    def finish(self, stage: str, autoencoder: keras.Model, result) -> None:
        """Keep a stage this attempt trained."""
        self.models[stage] = autoencoder
        self.stages[stage] = result.summary()
        self.histories[stage] = result.history

    def snapshot(self, stage: str, model: keras.Model):
        """Checkpoints of `stage` in training, carrying the finished stages along."""

        def snapshot(state: FitState) -> Checkpoint:
            arrays = capture_training(model)
            for done, autoencoder in self.models.items():
                arrays |= capture(autoencoder.variables, done)
            payload = {
                "run": self.key,
                "fit": state.to_json(),
                "stages": dict(self.stages),
                "histories": dict(self.histories),
            }
            return Checkpoint(stage, state.epoch, payload, arrays)

        return snapshot


def _train_stage(stage, autoencoder, frozen, settings: StageConfig, split, config, reporter, run):
    model = FeatureReconstruction(autoencoder, frozen, name=f"{stage}_trainer")
    model.compile(
        optimizer=make_optimizer(settings.optimizer, settings.lr),
        jit_compile=config.runtime.jit_compile,
    )
    start = run.start(stage)
    if start is not None:
        restore_training(model, run.resume.arrays)
    start = start or FitState()
    train = make_input(
        split.x_train,
        batch_size=settings.batch_size,
        shuffle=True,
        seed=config.seed,
        start_epoch=start.epoch,
        max_steps=config.steps_per_epoch,
    )
    val = make_input(split.x_val, batch_size=settings.batch_size, shuffle=False)
    return fit(
        model,
        stage=stage,
        train=train,
        val=val,
        epochs=settings.epochs,
        reporter=reporter,
        start=start,
        snapshot=run.snapshot(stage, model),
    )


def _report_reconstructions(reporter: Reporter, models, dataset: Dataset, count: int) -> None:
    """The probe images through every stage trained so far, handed over as a stage ends so
    the run page shows them while the next stage trains (the same file the export writes)."""
    if not reporter.wants_files():
        return
    probes = dataset.x_test[probe_indices(dataset.y_test, count)]
    images, _ = probe_reconstructions(models, probes)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **images)
    reporter.file_ready("reconstructions.npz", buffer.getvalue())


def assemble_stacked_ae(
    models: dict[str, keras.Model], kernel_sizes, decoder_output: str = "bn_relu"
) -> keras.Model:
    """The stacked AE with each trained stage's weights loaded by layer name."""
    stacked = build_stacked_ae(kernel_sizes, decoder_output)
    for stage in STAGES:
        transfer_weights(models[stage], stacked)
    return stacked


def _export(out_dir: Path, result: PretrainResult, rows, config, dataset, sets) -> list[Path]:
    files: list[Path] = []
    for name, model in result.models.items():
        files += artifacts.save_model(model, out_dir, name)
    if result.probes:
        np.savez_compressed(out_dir / "reconstructions.npz", allow_pickle=False, **result.probes)
        files.append(out_dir / "reconstructions.npz")
        files.append(figures.reconstruction_grid(result.probes, out_dir / "reconstructions.png"))
    files.append(artifacts.write_metrics_csv(out_dir / "metrics.csv", rows))
    stages = result.stages
    manifest = {
        "job": PRETRAIN.name,
        "config": config.model_dump(mode="json"),
        "kernel_sizes": list(config.kernel_sizes),
        "decoder_output": config.decoder_output,
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint()},
        "split": result.split,
        "image_sets": image_sets_record(dataset, sets),  # fetched with the weights by children
        "stages": stages,
        "test_reconstruction_loss": result.test_reconstruction_loss,
        "reconstruction": result.reconstruction,
        "probe_errors": result.probe_errors,
        "cancelled": result.cancelled,
        "trained_stages": _completed(stages),
        "partial_stages": [s for s, summary in stages.items() if summary["cancelled"]],
    }
    files.append(artifacts.write_json(out_dir / "pretrain.json", manifest))
    return files


def _completed(stages: dict[str, dict]) -> list[str]:
    """Stages that ran all their epochs (a cancelled one keeps its weights but not this)."""
    return [stage for stage, summary in stages.items() if not summary["cancelled"]]


def load_pretrained(weights_dir: Path, stages: tuple[str, ...] = STAGES) -> dict[str, keras.Model]:
    """Trained autoencoders from a pretrain output folder, built with their kernel sizes."""
    weights_dir = Path(weights_dir)
    manifest_path = weights_dir / "pretrain.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path}: not a pretrain output folder (no pretrain.json)")
    manifest = artifacts.read_json(manifest_path)
    kernel_sizes = dict(zip(STAGES, manifest["kernel_sizes"], strict=True))
    decoder_output = manifest.get("decoder_output", "bn_relu")  # older runs: the seed's
    models = {}
    for stage in stages:
        path = weights_dir / f"{stage}.weights.h5"
        if stage not in manifest["trained_stages"] or not path.exists():
            raise FileNotFoundError(f"{path}: stage {stage} was not trained in this pretrain run")
        autoencoder = build_autoencoder(stage, kernel_sizes[stage], decoder_output)
        models[stage] = artifacts.load_weights(autoencoder, path)
    return models


def pretrained_kernel_sizes(weights_dir: Path) -> tuple[int, int, int]:
    """Kernel size of each stage of a pretrain output folder."""
    return tuple(artifacts.read_json(Path(weights_dir) / "pretrain.json")["kernel_sizes"])
