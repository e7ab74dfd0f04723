"""Validated parameters of every job (pure pydantic).

Shared by the web, which refuses bad values before anything is queued, and the training
core, which runs them. Nothing here imports Keras, SQL or web code.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobspec.stages import STAGES

KernelSize = Literal[3, 5, 7]
OptimizerName = Literal["sgd", "adam", "rmsprop"]
Stage = Literal["ae01", "ae02", "ae03"]
assert get_args(Stage) == STAGES, "Stage must list jobspec.stages.STAGES"
Encoder = Literal["stacked", "single", "scratch"]
Architecture = Literal["stacked", "single"]
DecoderOutput = Literal["bn_relu", "sigmoid", "linear"]
# Validation metrics early stopping can watch; "balanced" ones stay fair on imbalanced data.
Monitor = Literal["val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1"]

DEFAULT_LEARNING_RATES = {"sgd": 0.01, "adam": 1e-3, "rmsprop": 1e-3}


def _split_seed_field() -> Any:  # pydantic types Field() as Any
    return Field(
        None,
        ge=0,
        description="Seed of the stratified train/validation split (default: the run's seed). "
        "Runs that share it, its validation fraction and the data set share one split",
    )


def _bn_momentum_field() -> Any:
    return Field(
        0.99,
        gt=0,
        lt=1,
        description="BatchNorm moving-average momentum (Keras' 0.99, as the seed); lower it "
        "(e.g. 0.9) for runs of a few hundred steps, or inference-mode scores stay at chance",
    )


def _max_train_images_field() -> Any:
    return Field(
        None,
        ge=2,
        le=100_000_000,
        description="Quick run: train on at most this many of the training images, a "
        "stratified sample (class proportions kept) drawn with the split seed before the "
        "train/validation split; empty: all of them",
        json_schema_extra={"placeholder": "all"},
    )


def _steps_per_epoch_field() -> Any:
    return Field(
        None,
        ge=1,
        le=10_000_000,
        description="Quick run: at most this many training batches per epoch, the first of "
        "each epoch's shuffled order (Lightning's limit_train_batches); empty: every batch",
        json_schema_extra={"placeholder": "all"},
    )


QUICK_FIELDS = ("max_train_images", "steps_per_epoch")


def is_quick(config: BaseModel) -> bool:
    """Whether a job trains on fewer images or batches than its data set gives."""
    return any(getattr(config, name, None) is not None for name in QUICK_FIELDS)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AugmentSettings(_Config):
    """The eight ImageDataGenerator settings the researcher used, plus the fill mode."""

    rotation_range: float = Field(
        15.0, ge=0.0, le=180.0, description="Max rotation in degrees; angle ~ U(-r, r)."
    )
    # Shear is an angle in degrees, as in ImageDataGenerator; 90 would be degenerate.
    shear_range: float = Field(
        10.0, ge=0.0, le=60.0, description="Max shear angle in degrees; angle ~ U(-s, s)."
    )
    horizontal_flip: bool = Field(True, description="Flip left-right with probability 0.5.")
    vertical_flip: bool = Field(False, description="Flip up-down with probability 0.5.")
    # Strictly below 1: ImageDataGenerator reads values >= 1 as pixels, not fractions.
    width_shift_range: float = Field(
        0.1, ge=0.0, lt=1.0, description="Max horizontal shift as a fraction of the width."
    )
    height_shift_range: float = Field(
        0.1, ge=0.0, lt=1.0, description="Max vertical shift as a fraction of the height."
    )
    # Below 1 so the smallest zoom factor 1 - z stays positive.
    zoom_range: float = Field(
        0.1, ge=0.0, lt=1.0, description="Zoom factor per axis ~ U(1 - z, 1 + z); >1 shrinks."
    )
    channel_shift_range: float = Field(
        10.0,
        ge=0.0,
        le=255.0,
        description="Max intensity shift in 0..255 units, shared by all channels of an image.",
    )
    fill_mode: Literal["nearest", "reflect", "constant", "wrap"] = Field(
        "nearest", description="How points outside the image are filled."
    )


class RuntimeOptions(_Config):
    """How to run on the device: GPU speed-ups, off by default (they slow a CPU down)."""

    mixed_precision: bool = Field(False, description="float16 compute on a GPU")
    jit_compile: bool = Field(False, description="XLA compilation (20-50% slower on CPU)")
    max_attempts: int = Field(
        2,
        ge=1,
        le=10,
        description="Tries before a run whose worker died is left failed (each resumes "
        "from the last epoch's checkpoint)",
    )


class StageConfig(_Config):
    """Training settings of one autoencoder stage."""

    kernel_size: KernelSize = Field(3, description="Conv kernel size of this stage: 3, 5 or 7")
    optimizer: OptimizerName = Field("adam", description="sgd, adam or rmsprop")
    learning_rate: float | None = Field(
        None, gt=0, le=1, description="Learning rate; default per optimizer"
    )
    epochs: int = Field(10, ge=1, le=10_000, description="Epochs to train this stage")
    batch_size: int = Field(128, ge=1, le=8192, description="Images per batch")

    @property
    def lr(self) -> float:
        """The learning rate in force."""
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.optimizer]


class PretrainConfig(_Config):
    """Layer-wise pretraining of the three autoencoders AE01 → AE02 → AE03."""

    ae01: StageConfig = Field(default_factory=StageConfig)
    ae02: StageConfig = Field(default_factory=StageConfig)
    ae03: StageConfig = Field(default_factory=StageConfig)
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="Held out from train")
    seed: int = Field(0, ge=0, description="Seed for init and shuffling (and the split)")
    split_seed: int | None = _split_seed_field()
    max_train_images: int | None = _max_train_images_field()
    steps_per_epoch: int | None = _steps_per_epoch_field()
    probe_images: int = Field(10, ge=1, le=100, description="Test images shown reconstructed")
    decoder_output: DecoderOutput = Field(
        "bn_relu",
        description="Last layer of AE01's decoder (the image it reconstructs): the seed's "
        "BatchNorm + ReLU, a sigmoid, or linear",
    )
    bn_momentum: float = _bn_momentum_field()
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)

    @property
    def split(self) -> int:
        """The seed of the train/validation split in force."""
        return self.seed if self.split_seed is None else self.split_seed

    def stage(self, name: str) -> StageConfig:
        """Settings of one stage by name."""
        config: StageConfig = getattr(self, name)
        return config

    @property
    def kernel_sizes(self) -> tuple[int, int, int]:
        """Kernel size of each stage, in order."""
        return (self.ae01.kernel_size, self.ae02.kernel_size, self.ae03.kernel_size)


class TuneConfig(_Config):
    """Optuna search over kernel size × optimizer (× learning rate) for one stage."""

    stage: Stage = Field("ae01", description="Which autoencoder to tune (the seed tuned AE01)")
    n_trials: int = Field(9, ge=1, le=10_000, description="Trials this process runs")
    kernel_sizes: list[KernelSize] = Field([3, 5, 7], min_length=1)
    optimizers: list[OptimizerName] = Field(["sgd", "adam", "rmsprop"], min_length=1)
    tune_learning_rate: bool = Field(False, description="Also search the learning rate")
    learning_rate_min: float = Field(1e-4, gt=0, le=1)
    learning_rate_max: float = Field(1e-1, gt=0, le=1)
    epochs: int = Field(5, ge=1, le=1000, description="Epochs per trial")
    batch_size: int = Field(128, ge=1, le=8192)
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    pruning: bool = Field(True, description="Stop poor trials early (median pruner)")
    seed: int = Field(0, ge=0)
    split_seed: int | None = _split_seed_field()
    max_train_images: int | None = _max_train_images_field()
    steps_per_epoch: int | None = _steps_per_epoch_field()
    study_name: str = Field("stacklab", min_length=1, max_length=200)
    bn_momentum: float = _bn_momentum_field()
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)

    @model_validator(mode="after")
    def _learning_rate_range(self) -> TuneConfig:
        if self.learning_rate_min >= self.learning_rate_max:
            raise ValueError("learning_rate_min must be below learning_rate_max")
        return self

    @property
    def split(self) -> int:
        """The seed of the train/validation split in force."""
        return self.seed if self.split_seed is None else self.split_seed


class EarlyStoppingConfig(_Config):
    """Stop when the monitored value stops improving; keep the best epoch's weights."""

    monitor: Monitor = Field(
        "val_loss",
        description="Validation metric to watch; val_balanced_accuracy or val_macro_f1 stay "
        "comparable with and without class weights",
    )
    patience: int = Field(5, ge=0, le=1000, description="Epochs without improvement")
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = True

    @property
    def mode(self) -> Literal["min", "max"]:
        """Whether the monitored value improves downwards (a loss) or upwards."""
        return "min" if self.monitor == "val_loss" else "max"


class FinetuneConfig(_Config):
    """A classifier on a pretrained (or scratch) encoder."""

    encoder: Encoder = Field("stacked", description="stacked (AE01-03), single (AE01), scratch")
    architecture: Architecture | None = Field(
        None, description="For scratch: which architecture to init randomly (default stacked)"
    )
    kernel_size: KernelSize = Field(
        3, description="Kernel size for scratch; pretrained uses its own"
    )
    kernel_sizes: tuple[KernelSize, KernelSize, KernelSize] | None = Field(
        None,
        description="For scratch: one kernel size per stage (AE01-03), overriding kernel_size "
        "(a pretraining study copies its pretrain's, so both arms share the architecture)",
    )
    freeze_encoder: bool = Field(False, description="Train only the head")
    augment: bool = Field(False, description="Random augmentation while training")
    augmentation: AugmentSettings = Field(default_factory=AugmentSettings)
    optimizer: OptimizerName = "adam"
    learning_rate: float | None = Field(None, gt=0, le=1)
    epochs: int = Field(50, ge=1, le=10_000, description="Upper bound; early stopping ends sooner")
    batch_size: int = Field(128, ge=1, le=8192)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    class_weights: bool = Field(False, description="Weight the loss against class imbalance")
    bn_momentum: float = _bn_momentum_field()
    seed: int = Field(0, ge=0, description="Seed for init, augmentation and data order")
    split_seed: int | None = _split_seed_field()
    max_train_images: int | None = _max_train_images_field()
    steps_per_epoch: int | None = _steps_per_epoch_field()
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)

    @model_validator(mode="after")
    def _architecture_only_for_scratch(self) -> FinetuneConfig:
        if self.architecture is not None and self.encoder != "scratch":
            raise ValueError("architecture is only for encoder='scratch'")
        if self.freeze_encoder and self.encoder == "scratch":
            raise ValueError("freeze_encoder needs a pretrained encoder, not scratch")
        if self.kernel_sizes is not None and self.encoder != "scratch":
            raise ValueError("kernel_sizes is only for encoder='scratch'")
        return self

    @property
    def split(self) -> int:
        """The seed of the train/validation split in force."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def scratch_kernel_sizes(self) -> tuple[int, int, int]:
        """Per-stage kernel sizes of a scratch classifier."""
        return self.kernel_sizes or (self.kernel_size,) * 3

    @property
    def model_architecture(self) -> Architecture:
        """The classifier architecture that gets built."""
        if self.encoder == "scratch":
            return self.architecture or "stacked"
        return self.encoder

    @property
    def lr(self) -> float:
        """The learning rate in force."""
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.optimizer]
