"""Fine-tuning: a classifier on a pretrained (or scratch) encoder, early stopping, augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from jobspec import kinds
from jobspec.builtin_kinds import FINETUNE
from jobspec.params import FinetuneConfig
from jobspec.stages import FINETUNE_STAGE
from worker.ml import artifacts
from worker.ml.augment import build_augmenter
from worker.ml.callbacks import FitState
from worker.ml.checkpoint import (
    Checkpoint,
    ResumableEarlyStopping,
    capture_training,
    check_resume,
    restore_training,
    run_key,
)
from worker.ml.datasets.dataset import Dataset
from worker.ml.evaluate import Evaluation, evaluate, export_evaluation
from worker.ml.metrics import classification_metrics
from worker.ml.models import (
    build_classifier,
    encoder_of,
    set_bn_momentum,
    transfer_weights,
)
from worker.ml.pipeline import can_augment, make_input
from worker.ml.pretrain import load_pretrained, pretrained_kernel_sizes
from worker.ml.reporting import Reporter
from worker.ml.splits import PretrainCheck, check_pretrain, digests, image_sets, write_image_sets
from worker.ml.training import fit, make_optimizer, runtime


def pretrained_stages(config: FinetuneConfig) -> tuple[str, ...]:
    """The stages whose encoders the classifier loads: the registry's answer, the same one
    the launch checks the parent run against."""
    return kinds.parent_stages(FINETUNE.name, config)


@dataclass
class FinetuneResult:
    """The trained classifier, how training went, and its test scores."""

    model: keras.Model
    training: dict
    evaluation: Evaluation | None
    cancelled: bool
    files: list[Path] = field(default_factory=list)
    split: dict = field(default_factory=dict)  # Split.record() of the split trained on


def build_model(config: FinetuneConfig, num_classes: int, pretrained_dir: Path | None):
    """The classifier, with pretrained encoder weights loaded by layer name when asked."""
    if config.encoder == "scratch":
        sizes = config.scratch_kernel_sizes
        return build_classifier(config.model_architecture, sizes, num_classes), []
    if pretrained_dir is None:
        raise ValueError(f"encoder={config.encoder!r} needs a pretrain output folder")
    kernel_sizes = pretrained_kernel_sizes(pretrained_dir)
    classifier = build_classifier(config.model_architecture, kernel_sizes, num_classes)
    copied = []
    for autoencoder in load_pretrained(pretrained_dir, pretrained_stages(config)).values():
        copied += transfer_weights(autoencoder, classifier)
    return classifier, copied


def augment_in_graph(config: FinetuneConfig, resume: Checkpoint | None = None) -> bool:
    """Whether augmentation runs inside the model rather than in the input pipeline.

    The pipeline does it where it can (TensorFlow): in parallel with the step, and with
    draws keyed by (seed, epoch, batch), so no RNG state needs checkpointing. A checkpoint
    taken when the model augmented (before the pipeline could) resumes the same way."""
    if not config.augment:
        return False
    if resume is not None and resume.state.get("augment", "graph") == "graph":
        return True
    return not can_augment()


def training_model(
    classifier: keras.Model, config: FinetuneConfig, *, in_graph: bool
) -> keras.Model:
    """The graph that trains: augmentation when in_graph, encoder (frozen or not), head."""
    encoder, head = encoder_of(classifier), classifier.layers[-1]
    inputs = keras.Input(classifier.input_shape[1:], name="train_input")
    x = inputs
    if in_graph:
        x = build_augmenter(config.augmentation, seed=config.seed)(x)
    if config.freeze_encoder:
        encoder.trainable = False
        x = encoder(x, training=False)  # BN keeps its pretrained statistics
    else:
        x = encoder(x)
    return keras.Model(inputs, head(x), name=f"{classifier.name}_trainer")


def finetune(
    dataset: Dataset,
    config: FinetuneConfig,
    *,
    out_dir: Path,
    pretrained_dir: Path | None = None,
    reporter: Reporter | None = None,
    resume: Checkpoint | None = None,
) -> FinetuneResult:
    """Train, early-stop, evaluate on test and export the classifier to out_dir.

    With `resume` (a checkpoint of this run), training continues after its epoch.
    """
    reporter = reporter or Reporter()
    out_dir = Path(out_dir)
    key = run_key(config, dataset)
    check_resume(resume, stages=(FINETUNE_STAGE,), key=key, config_type=type(config))
    split = dataset.split_validation(
        fraction=config.validation_fraction, seed=config.split, max_images=config.max_train_images
    )
    sets = image_sets(dataset, split, max_images=config.max_train_images, tested=True)
    check = PretrainCheck()
    if config.encoder != "scratch" and pretrained_dir is not None:
        check = check_pretrain(dataset, sets, pretrained_dir)
    with runtime(config.runtime, config.seed):
        classifier, copied = build_model(config, dataset.num_classes, pretrained_dir)
        set_bn_momentum(classifier, config.bn_momentum)
        in_graph = augment_in_graph(config, resume)
        model = training_model(classifier, config, in_graph=in_graph)
        model.compile(
            optimizer=make_optimizer(config.optimizer, config.lr),
            loss="sparse_categorical_crossentropy",
            metrics=classification_metrics(dataset.num_classes),
            jit_compile=config.runtime.jit_compile,
        )
        stopper = _early_stopping(config)
        start = FitState()
        if resume is not None:
            restore_training(model, resume.arrays)
            stopper.resume(resume.state["early_stopping"], resume.arrays)
            start = FitState.from_json(resume.state["fit"])
        bs = config.batch_size
        result = fit(
            model,
            stage=FINETUNE_STAGE,
            train=make_input(
                split.x_train,
                split.y_train,
                batch_size=bs,
                shuffle=True,
                seed=config.seed,
                start_epoch=start.epoch,
                max_steps=config.steps_per_epoch,
                augment=config.augmentation if config.augment and not in_graph else None,
            ),
            val=make_input(split.x_val, split.y_val, batch_size=bs, shuffle=False),
            epochs=config.epochs,
            reporter=reporter,
            callbacks=[stopper],
            class_weight=(
                part_class_weights(split.y_train, dataset.num_classes)
                if config.class_weights
                else None
            ),
            start=start,
            snapshot=_snapshot(model, stopper, key, "graph" if in_graph else "pipeline"),
        )
        _describe(result, stopper, config, copied, check)
        result.extra["image_sets"] = digests(sets)  # the sets themselves: image_sets.json
        training = result.summary()
        reporter.stage_ended(FINETUNE_STAGE, training)
        # A cancelled run stops now: its best weights are kept, scoring them can wait.
        evaluation = None if result.cancelled else evaluate(classifier, dataset)
    record = split.record()
    files = _export(out_dir, classifier, result, training, evaluation, config, dataset, record)
    files.append(write_image_sets(out_dir, dataset, sets))
    return FinetuneResult(classifier, training, evaluation, result.cancelled, files, record)


def _early_stopping(config: FinetuneConfig) -> ResumableEarlyStopping:
    return ResumableEarlyStopping(
        monitor=config.early_stopping.monitor,
        # Explicit: Keras' "auto" cannot tell which way a metric of ours should go.
        mode=config.early_stopping.mode,
        patience=config.early_stopping.patience,
        min_delta=config.early_stopping.min_delta,
        restore_best_weights=config.early_stopping.restore_best_weights,
    )


def _snapshot(model: keras.Model, stopper: ResumableEarlyStopping, key: dict, augment: str):
    def snapshot(state: FitState) -> Checkpoint:
        stopping, best = stopper.snapshot(state.epoch)
        payload: dict[str, object] = {
            "run": key,
            "fit": state.to_json(),
            "early_stopping": stopping,
        }
        payload["augment"] = augment  # where augmentation ran: a resume keeps it there
        return Checkpoint(FINETUNE_STAGE, state.epoch, payload, capture_training(model) | best)

    return snapshot


def part_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """'Balanced' class weights from the labels the model trains on (the split's training
    part, not every training image): n / (classes present x count), as scikit-learn's
    compute_class_weight; a class absent from the part gets 1.0."""
    counts = np.bincount(labels, minlength=num_classes)
    present = int(np.count_nonzero(counts))
    return {
        c: float(len(labels) / (present * counts[c])) if counts[c] else 1.0
        for c in range(num_classes)
    }


def _describe(result, stopper, config: FinetuneConfig, copied, check: PretrainCheck) -> None:
    """Early stopping's account of the fit, for the summary."""
    if stopper.best_weights is not None or not config.early_stopping.restore_best_weights:
        result.best_epoch = stopper.best_epoch + 1
        result.best_value = None if stopper.best is None else float(stopper.best)
    result.extra = {
        "monitor": config.early_stopping.monitor,
        "epochs_planned": config.epochs,
        # Only when early stopping cut training short: patience running out in the last
        # epoch ends nothing early, and a cancelled run was stopped by its user.
        "stopped_early": stopper.stopped_epoch > 0
        and result.epochs_run < config.epochs
        and not result.cancelled,
        "restored_best_weights": config.early_stopping.restore_best_weights
        and stopper.best_weights is not None,
        "pretrained_layers": len(copied),
        "warnings": list(check.warnings),
        # How many of this run's validation and test images the encoder's pretrain trained
        # on (splits.check_pretrain); None: no pretrain, or it could not be checked.
        "pretrain_overlap": check.overlap,
    }


def _export(out_dir, classifier, result, training, evaluation, config, dataset, split) -> list:
    files = artifacts.save_model(classifier, out_dir, "classifier")
    if evaluation is not None:
        files += export_evaluation(evaluation, out_dir)
    rows = artifacts.history_rows(FINETUNE_STAGE, result.history)
    files.append(artifacts.write_metrics_csv(out_dir / "metrics.csv", rows))
    manifest = {
        "job": FINETUNE.name,
        "config": config.model_dump(mode="json"),
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint()},
        "split": split,
        "training": training,
        "evaluation": evaluation and evaluation.summary(),
        "cancelled": result.cancelled,
    }
    files.append(artifacts.write_json(out_dir / "finetune.json", manifest))
    return files
