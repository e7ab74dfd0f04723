"""Layer-wise pretraining: AE01 on images, AE02 on AE01's features, AE03 on AE02's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import ops

from jobspec.params import PretrainConfig, StageConfig
from worker.ml import artifacts, figures
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
    STAGES,
    build_autoencoder,
    build_stacked_ae,
    decoder_of,
    encoder_of,
    set_bn_momentum,
    transfer_weights,
)
from worker.ml.pipeline import make_input, to_float
from worker.ml.reporting import Reporter
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


def pretrain(
    dataset: Dataset,
    config: PretrainConfig,
    *,
    out_dir: Path,
    reporter: Reporter | None = None,
    resume: Checkpoint | None = None,
) -> PretrainResult:
    """Train AE01 -> AE02 -> AE03, assemble the stacked AE, export all of it to out_dir.

    With `resume`, stages finished before the checkpoint's come from it untrained, and its
    stage continues after its epoch.
    """
    reporter = reporter or Reporter()
    out_dir = Path(out_dir)
    run = _Run(resume, run_key(config, dataset))
    split = dataset.split_validation(fraction=config.validation_fraction, seed=config.seed)
    cancelled = False
    with runtime(config.runtime, config.seed):
        for stage in STAGES:
            settings = config.stage(stage)
            autoencoder = build_autoencoder(stage, settings.kernel_size)
            set_bn_momentum(autoencoder, config.bn_momentum)
            if run.restore_finished(stage, autoencoder):
                continue
            frozen = [encoder_of(run.models[s]) for s in STAGES[: STAGES.index(stage)]]
            result = _train_stage(
                stage, autoencoder, frozen, settings, split, config, reporter, run
            )
            run.finish(stage, autoencoder, result)
            reporter.stage_ended(stage, run.stages[stage])
            if result.cancelled:
                cancelled = True
                break
        models, stages, rows = run.models, run.stages, run.rows
        test_loss, probes = None, {}
        if not cancelled:
            models["stacked_ae"] = assemble_stacked_ae(models, config.kernel_sizes)
            test_loss = reconstruction_loss(models["stacked_ae"], dataset.x_test)
        probes = probe_reconstructions(models, dataset, config.probe_images)
    files = _export(out_dir, models, stages, rows, probes, test_loss, config, dataset, cancelled)
    return PretrainResult(models, stages, test_loss, probes, cancelled, files)


class _Run:
    """The stages done so far, this attempt's and those a checkpoint brought back."""

    def __init__(self, resume: Checkpoint | None, key: dict):
        check_resume(resume, stages=STAGES, key=key)
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


def assemble_stacked_ae(models: dict[str, keras.Model], kernel_sizes) -> keras.Model:
    """The stacked AE with each trained stage's weights loaded by layer name."""
    stacked = build_stacked_ae(kernel_sizes)
    for stage in STAGES:
        transfer_weights(models[stage], stacked)
    return stacked


def reconstruction_loss(model: keras.Model, x_uint8: np.ndarray, batch_size: int = 256) -> float:
    """Mean squared error of an image autoencoder over a set of images."""
    total, count = 0.0, 0
    for start in range(0, len(x_uint8), batch_size):
        x = to_float(x_uint8[start : start + batch_size])
        reconstruction = np.asarray(model.predict_on_batch(x))
        total += float(np.square(reconstruction - x).sum())
        count += x.size
    return total / count


def probe_indices(labels: np.ndarray, count: int) -> np.ndarray:
    """A fixed set of test images: round-robin over classes, first of each."""
    chosen: list[int] = []
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    depth = 0
    while len(chosen) < min(count, len(labels)):
        for indices in by_class:
            if depth < len(indices) and len(chosen) < count:
                chosen.append(int(indices[depth]))
        depth += 1
    return np.array(chosen, dtype=np.int64)


def probe_reconstructions(models, dataset: Dataset, count: int) -> dict[str, np.ndarray]:
    """The probe images and each trained stage's reconstruction of them, as uint8."""
    x = to_float(dataset.x_test[probe_indices(dataset.y_test, count)])
    probes = {"input": x}
    encoders, decoders = [], []
    for stage in STAGES:
        if stage not in models:
            break
        encoders.append(encoder_of(models[stage]))
        decoders.insert(0, decoder_of(models[stage]))
        h = x
        for layer in [*encoders, *decoders]:
            h = layer(h, training=False)
        probes[stage] = ops.convert_to_numpy(h)
    return {name: _to_uint8(images) for name, images in probes.items()}


def _to_uint8(images) -> np.ndarray:
    return (np.clip(np.asarray(images), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _export(out_dir, models, stages, rows, probes, test_loss, config, dataset, cancelled):
    files: list[Path] = []
    for name, model in models.items():
        files += artifacts.save_model(model, out_dir, name)
    if probes:
        np.savez_compressed(out_dir / "reconstructions.npz", **probes)
        files.append(out_dir / "reconstructions.npz")
        files.append(figures.reconstruction_grid(probes, out_dir / "reconstructions.png"))
    files.append(artifacts.write_metrics_csv(out_dir / "metrics.csv", rows))
    manifest = {
        "job": "pretrain",
        "config": config.model_dump(mode="json"),
        "kernel_sizes": list(config.kernel_sizes),
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint()},
        "stages": stages,
        "test_reconstruction_loss": test_loss,
        "cancelled": cancelled,
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
    models = {}
    for stage in stages:
        path = weights_dir / f"{stage}.weights.h5"
        if stage not in manifest["trained_stages"] or not path.exists():
            raise FileNotFoundError(f"{path}: stage {stage} was not trained in this pretrain run")
        models[stage] = artifacts.load_weights(build_autoencoder(stage, kernel_sizes[stage]), path)
    return models


def pretrained_kernel_sizes(weights_dir: Path) -> tuple[int, int, int]:
    """Kernel size of each stage of a pretrain output folder."""
    return tuple(artifacts.read_json(Path(weights_dir) / "pretrain.json")["kernel_sizes"])
