"""Typer options shared by several commands (annotations only: nothing heavy is imported)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DATA_PANEL = "Data"
TRAIN_PANEL = "Training"
RUNTIME_PANEL = "Runtime (GPU)"

PER_STAGE_NOTE = "One value for all three stages, or three comma-separated ones for ae01,ae02,ae03."

Data = Annotated[
    str,
    typer.Option(
        "--data", "-d", metavar="SPEC", rich_help_panel=DATA_PANEL,
        help="Dataset: demo, demo-imbalanced, cifar10, or a path to an .npz file, an image "
        "folder or .zip (train/<class>/, test/<class>/), cifar-10-python.tar.gz or an "
        "extracted cifar-10-batches-py folder.",
    ),
]  # fmt: skip
Out = Annotated[
    Path,
    typer.Option(
        "--out", "-o", metavar="DIR", file_okay=False,
        help="Output folder; created if missing, files of an earlier run there are replaced.",
    ),
]  # fmt: skip
TrainLimit = Annotated[
    int | None,
    typer.Option(
        min=1, metavar="N", rich_help_panel=DATA_PANEL,
        help="Train on a stratified subset of N training images (for quick runs; the same "
        "N always picks the same images).",
    ),
]  # fmt: skip
TestLimit = Annotated[
    int | None,
    typer.Option(
        min=1, metavar="N", rich_help_panel=DATA_PANEL,
        help="Score on a stratified subset of N test images (same N, same images).",
    ),
]  # fmt: skip
Resize = Annotated[
    bool,
    typer.Option(
        "--resize", rich_help_panel=DATA_PANEL,
        help="Resize image-folder images that are not 32x32 instead of refusing them.",
    ),
]  # fmt: skip
Seed = Annotated[
    int,
    typer.Option(
        min=0, rich_help_panel=TRAIN_PANEL,
        help="Seed for the validation split, weight init and shuffling.",
    ),
]  # fmt: skip
ValidationFraction = Annotated[
    float,
    typer.Option(
        rich_help_panel=TRAIN_PANEL,
        help="Fraction of the training images held out (stratified) for validation.",
    ),
]  # fmt: skip
BnMomentum = Annotated[
    float,
    typer.Option(
        rich_help_panel=TRAIN_PANEL,
        help="BatchNorm moving-average momentum; try 0.9 for runs of only a few hundred "
        "batches, or inference-mode scores can stay at chance.",
    ),
]  # fmt: skip
Pretrained = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR", file_okay=False, rich_help_panel=TRAIN_PANEL,
        help="Output folder of an earlier 'stacklab pretrain' run.",
    ),
]  # fmt: skip
MixedPrecision = Annotated[
    bool,
    typer.Option(
        "--mixed-precision", rich_help_panel=RUNTIME_PANEL,
        help="float16 compute (GPU speed-up; slower on a CPU).",
    ),
]  # fmt: skip
JitCompile = Annotated[
    bool,
    typer.Option(
        "--jit-compile", rich_help_panel=RUNTIME_PANEL,
        help="XLA-compile the training step (GPU speed-up; 20-50% slower on a CPU).",
    ),
]  # fmt: skip


def train_option(help_text: str, metavar: str | None = None) -> Any:
    """A typer option in the Training help panel."""
    return typer.Option(help=help_text, metavar=metavar, rich_help_panel=TRAIN_PANEL)


KernelSizes = Annotated[
    str, train_option("Conv kernel size, 3, 5 or 7. " + PER_STAGE_NOTE, "K[,K,K]")
]
Optimizers = Annotated[
    str, train_option("Optimizer: sgd, adam or rmsprop. " + PER_STAGE_NOTE, "NAME[,NAME,NAME]")
]
LearningRates = Annotated[
    str | None,
    train_option(
        "Learning rate; default 0.01 for sgd, 0.001 otherwise. " + PER_STAGE_NOTE, "LR[,LR,LR]"
    ),
]
StageEpochs = Annotated[str, train_option("Epochs. " + PER_STAGE_NOTE, "N[,N,N]")]
StageBatchSizes = Annotated[str, train_option("Images per batch. " + PER_STAGE_NOTE, "N[,N,N]")]
