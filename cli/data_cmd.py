"""`stacklab data import|info`: bring a dataset into stacklab's .npz form, or describe one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import jobs, options
from cli.errors import CliError, data_errors, user_errors
from cli.summaries import table

if TYPE_CHECKING:
    from worker.ml.datasets.dataset import Dataset

data_app = typer.Typer(
    help="Import datasets into stacklab's .npz form and inspect them.", no_args_is_help=True
)


def summary_lines(dataset: Dataset) -> list[str]:
    """Name, sizes, fingerprint and a per-class count table of both splits."""
    info = dataset.summary()
    rows = [
        [name, info["train_counts"][name], info["test_counts"][name]]
        for name in info["class_names"]
    ]
    return [
        f"{info['name']} (from {info['source']}): {info['n_train']} train / {info['n_test']} "
        f"test images of {'x'.join(map(str, info['image_shape']))}, "
        f"{info['num_classes']} classes",
        f"fingerprint {info['fingerprint']}",
        *table(["class", "train", "test"], rows),
    ]


@data_app.command("import", no_args_is_help=True)
def import_(
    src: Annotated[
        str,
        typer.Argument(
            metavar="SRC",
            help="What to import: a .npz file, an image folder or .zip (train/<class>/, "
            "test/<class>/), cifar-10-python.tar.gz, a cifar-10-batches-py folder, or "
            "demo, demo-imbalanced, cifar10.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE.npz",
            dir_okay=False,
            help="Where to save the dataset (written atomically; replaced if it exists).",
        ),
    ],  # fmt: skip
    resize: options.Resize = False,
    name: Annotated[
        str | None, typer.Option(help="Name stored with the dataset; default from the source.")
    ] = None,
) -> None:
    """Validate a dataset in any supported format and save it as one .npz file."""
    with user_errors():
        if out.suffix.lower() != ".npz":
            raise CliError(f"--out: {out} must end in .npz")
        dataset = jobs.load_data(src, resize=resize, option="SRC")
        if name is not None:
            with data_errors("--name"):
                dataset = dataclasses.replace(dataset, name=name)
        try:
            path = dataset.save(out)
        except OSError as exc:
            raise CliError(f"--out: cannot write {out}: {exc}") from exc
    for line in summary_lines(dataset):
        typer.echo(line)
    typer.echo(f"Saved: {path.resolve()}")


@data_app.command("info", no_args_is_help=True)
def info(
    spec: Annotated[
        str,
        typer.Argument(
            metavar="SPEC", help="Dataset to describe: a name or path, as --data takes it."
        ),
    ],
    resize: options.Resize = False,
) -> None:
    """Print a dataset's sizes, fingerprint and images per class."""
    with user_errors():
        dataset = jobs.load_data(spec, resize=resize, option="SPEC")
    for line in summary_lines(dataset):
        typer.echo(line)
