"""The `stacklab` command: pretrain, tune, finetune, evaluate, data, demo.

Keras and TensorFlow are imported inside the commands that train, so `--help` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import configs, jobs, options, summaries
from cli.data_cmd import data_app
from cli.demo import DEMO_HELP, demo
from cli.errors import CliError, user_errors
from cli.options import TRAIN_PANEL, train_option
from cli.remote import runs_app
from jobspec.scheduling import Lane  # standard library only: --help stays instant
from jobspec.stages import AE01  # no imports of its own: --help stays instant

if TYPE_CHECKING:  # pydantic loads only in the commands that need it
    from jobspec.params import FinetuneConfig

app = typer.Typer(
    name="stacklab",
    help="Stacked convolutional autoencoders on CIFAR-10-style images, from the command line. "
    "Each command writes its files and a summary.json into --out; Ctrl-C stops a job after "
    "the current batch and keeps what it has (a second Ctrl-C aborts).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.command(no_args_is_help=True)
def pretrain(
    data: options.Data,
    out: options.Out,
    kernel_size: options.KernelSizes = "3",
    optimizer: options.Optimizers = "adam",
    learning_rate: options.LearningRates = None,
    epochs: options.StageEpochs = "10",
    batch_size: options.StageBatchSizes = "128",
    validation_fraction: options.ValidationFraction = 0.1,
    bn_momentum: options.BnMomentum = 0.99,
    probe_images: Annotated[
        int, train_option("Test images shown reconstructed in reconstructions.png.")
    ] = 10,
    seed: options.Seed = 0,
    train_limit: options.TrainLimit = None,
    test_limit: options.TestLimit = None,
    resize: options.Resize = False,
    mixed_precision: options.MixedPrecision = False,
    jit_compile: options.JitCompile = False,
) -> None:
    """Train AE01 -> AE02 -> AE03 layer by layer; save each stage and the stacked AE."""
    with user_errors():
        stages: dict[str, str | None] = {"kernel_size": kernel_size, "optimizer": optimizer}
        stages |= {"learning_rate": learning_rate, "epochs": epochs, "batch_size": batch_size}
        config = configs.pretrain_config(
            stages=stages,
            validation_fraction=validation_fraction,
            bn_momentum=bn_momentum,
            probe_images=probe_images,
            seed=seed,
            runtime=configs.runtime(mixed_precision, jit_compile),
        )
        dataset = jobs.load_data(
            data, resize=resize, train_limit=train_limit, test_limit=test_limit
        )
        result, seconds = jobs.pretrain(dataset, config, out)
    summary = summaries.pretrain_summary(result, dataset, seconds, out)
    summaries.finish(out, summary, summaries.pretrain_lines(summary))


@app.command(no_args_is_help=True)
def tune(
    data: options.Data,
    out: options.Out,
    stage: Annotated[
        str, train_option("Stage to tune: ae01, ae02 or ae03 (ae02/ae03 need --pretrained).")
    ] = AE01,
    trials: Annotated[int, train_option("Trials this process runs.")] = 9,
    kernel_sizes: Annotated[
        str, train_option("Kernel sizes to try, comma-separated.", "K,K,...")
    ] = "3,5,7",
    optimizers: Annotated[
        str, train_option("Optimizers to try, comma-separated.", "NAME,...")
    ] = "sgd,adam,rmsprop",
    tune_learning_rate: Annotated[
        bool,
        train_option("Also search the learning rate (log-uniform), with TPE instead of a grid."),
    ] = False,
    lr_min: Annotated[float, train_option("Lowest learning rate searched.")] = 1e-4,
    lr_max: Annotated[float, train_option("Highest learning rate searched.")] = 0.1,
    epochs: Annotated[int, train_option("Epochs per trial.")] = 5,
    batch_size: Annotated[int, train_option("Images per batch.")] = 128,
    pruning: Annotated[bool, train_option("Stop poor trials early (median pruner).")] = True,
    validation_fraction: options.ValidationFraction = 0.1,
    bn_momentum: options.BnMomentum = 0.99,
    seed: options.Seed = 0,
    study_name: Annotated[
        str, train_option("Optuna study name; an existing study is continued.")
    ] = "stacklab",
    storage: Annotated[
        str | None,
        train_option(
            "Optuna storage URL shared by parallel workers; default sqlite in --out.", "URL"
        ),
    ] = None,
    pretrained: options.Pretrained = None,
    train_limit: options.TrainLimit = None,
    test_limit: options.TestLimit = None,
    resize: options.Resize = False,
    mixed_precision: options.MixedPrecision = False,
    jit_compile: options.JitCompile = False,
) -> None:
    """Search kernel size x optimizer (x learning rate) for one stage with Optuna."""
    with user_errors():
        config = configs.tune_config(
            kernel_sizes=kernel_sizes,
            optimizers=optimizers,
            stage=stage,
            n_trials=trials,
            tune_learning_rate=tune_learning_rate,
            learning_rate_min=lr_min,
            learning_rate_max=lr_max,
            epochs=epochs,
            batch_size=batch_size,
            pruning=pruning,
            validation_fraction=validation_fraction,
            bn_momentum=bn_momentum,
            seed=seed,
            study_name=study_name,
            runtime=configs.runtime(mixed_precision, jit_compile),
        )
        if storage is not None and "://" not in storage:
            raise CliError(
                f"--storage: expected a database URL like sqlite:///study.db, got {storage!r}"
            )
        from jobspec.builtin_kinds import TUNE

        earlier = TUNE.parents(config)
        if earlier:
            pretrained = jobs.check_pretrained(pretrained, earlier, why=f"tuning {config.stage}")
        dataset = jobs.load_data(
            data, resize=resize, train_limit=train_limit, test_limit=test_limit
        )
        result, seconds = jobs.tune(
            dataset, config, out, storage=storage, pretrained=pretrained if earlier else None
        )
    summary = summaries.tune_summary(result, dataset, seconds, out)
    summaries.finish(out, summary, summaries.tune_lines(summary))


@app.command(no_args_is_help=True)
def finetune(
    data: options.Data,
    out: options.Out,
    encoder: Annotated[
        str,
        typer.Option(
            help="stacked (pretrained AE01-03), single (pretrained AE01) or scratch (random init).",
            rich_help_panel=TRAIN_PANEL,
        ),
    ],
    pretrained: options.Pretrained = None,
    architecture: Annotated[
        str | None, train_option("With --encoder scratch: stacked (default) or single.")
    ] = None,
    kernel_size: Annotated[int, train_option("With --encoder scratch: kernel size 3, 5 or 7.")] = 3,
    freeze_encoder: Annotated[
        bool, train_option("Train only the head; the pretrained encoder stays as it is.")
    ] = False,
    augment: Annotated[bool, train_option("Random augmentation of the training images.")] = False,
    aug: Annotated[
        list[str] | None,
        train_option(
            "Augmentation setting, repeatable, e.g. --aug rotation_range=20 --aug "
            "vertical_flip=true. Keys: rotation_range, shear_range, horizontal_flip, "
            "vertical_flip, width_shift_range, height_shift_range, zoom_range, "
            "channel_shift_range, fill_mode.",
            "KEY=VALUE",
        ),
    ] = None,
    optimizer: Annotated[str, train_option("sgd, adam or rmsprop.")] = "adam",
    learning_rate: Annotated[
        float | None, train_option("Learning rate; default 0.01 for sgd, 0.001 otherwise.")
    ] = None,
    epochs: Annotated[int, train_option("Most epochs; early stopping may end sooner.")] = 50,
    batch_size: Annotated[int, train_option("Images per batch.")] = 128,
    patience: Annotated[
        int, train_option("Early stopping: epochs without improvement before stopping.")
    ] = 5,
    monitor: Annotated[
        str, train_option("Early stopping watches val_loss or val_accuracy.")
    ] = "val_loss",
    min_delta: Annotated[float, train_option("Early stopping: least change that counts.")] = 0.0,
    restore_best: Annotated[
        bool, train_option("Keep the weights of the best epoch, not the last.")
    ] = True,
    class_weights: Annotated[
        bool, train_option("Weight the loss against class imbalance ('balanced').")
    ] = False,
    validation_fraction: options.ValidationFraction = 0.1,
    bn_momentum: options.BnMomentum = 0.99,
    seed: options.Seed = 0,
    train_limit: options.TrainLimit = None,
    test_limit: options.TestLimit = None,
    resize: options.Resize = False,
    mixed_precision: options.MixedPrecision = False,
    jit_compile: options.JitCompile = False,
) -> None:
    """Train a classifier on a pretrained (or scratch) encoder, score it on the test split."""
    with user_errors():
        if aug and not augment:
            raise CliError("--aug: has no effect without --augment")
        early_stopping = {"patience": patience, "monitor": monitor, "min_delta": min_delta}
        config = configs.finetune_config(
            aug=aug or [],
            early_stopping=early_stopping | {"restore_best_weights": restore_best},
            encoder=encoder,
            architecture=architecture,
            kernel_size=kernel_size,
            freeze_encoder=freeze_encoder,
            augment=augment,
            optimizer=optimizer,
            learning_rate=learning_rate,
            epochs=epochs,
            batch_size=batch_size,
            class_weights=class_weights,
            validation_fraction=validation_fraction,
            bn_momentum=bn_momentum,
            seed=seed,
            runtime=configs.runtime(mixed_precision, jit_compile),
        )
        pretrained = _finetune_pretrained(config, pretrained)
        dataset = jobs.load_data(
            data, resize=resize, train_limit=train_limit, test_limit=test_limit
        )
        result, seconds = jobs.finetune(dataset, config, out, pretrained)
    summary = summaries.finetune_summary(result, dataset, seconds, out)
    summaries.finish(out, summary, summaries.finetune_lines(summary))


def _finetune_pretrained(config: FinetuneConfig, pretrained: Path | None) -> Path | None:
    """The checked --pretrained folder for a pretrained encoder; None for scratch."""
    from jobspec.builtin_kinds import FINETUNE

    stages = FINETUNE.parents(config)
    if not stages:
        if pretrained is not None:
            raise CliError(f"--pretrained: not used with --encoder {config.encoder}; leave it out")
        return None
    return jobs.check_pretrained(pretrained, stages, why=f"--encoder {config.encoder}")


@app.command(no_args_is_help=True)
def evaluate(
    model: Annotated[
        Path,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            help="A saved classifier, e.g. the classifier.keras of a finetune run.",
        ),
    ],
    data: options.Data,
    out: options.Out,
    test_limit: options.TestLimit = None,
    resize: options.Resize = False,
) -> None:
    """Score a saved classifier on a dataset's test split; write evaluation files."""
    with user_errors():
        jobs.check_model(model)
        dataset = jobs.load_data(data, resize=resize, test_limit=test_limit)
        evaluation, files, seconds = jobs.evaluate(model, dataset, out)
    summary = summaries.evaluate_summary(
        evaluation, files, dataset, model=model, seconds=seconds, out_dir=out
    )
    summaries.finish(out, summary, summaries.evaluate_lines(summary))


GPUS_HELP = (
    "One worker per GPU, each pinned to its device (CUDA_VISIBLE_DEVICES) and named gpuN: "
    "all (those nvidia-smi -L lists), a list like 0,1, or none. Without a GPU: one training "
    "worker on the CPU, named cpu."
)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address the web app listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the web app.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=0, help="Celery workers to start beside it (one job each).")
    ] = 1,
    gpus: Annotated[
        str | None, typer.Option(metavar="all|0,1|none", help=GPUS_HELP + " Overrides --workers.")
    ] = None,
    cpu_lane: Annotated[
        bool,
        typer.Option(
            help="Also start one CPU lane worker (data set imports, evaluate now), so they "
            "never wait behind training. Turn it off only where one runs elsewhere "
            "(stacklab worker --lane cpu)."
        ),
    ] = True,
) -> None:
    """The dashboard and workers together, on the settings in force (embedded by default):
    training workers and one CPU lane worker."""
    from cli.serve import serve as run_serve
    from worker.device import GpuSpecError

    with user_errors():
        try:
            run_serve(host, port, workers, gpus, cpu_lane=cpu_lane)
        except GpuSpecError as err:
            raise CliError(str(err)) from err


LANE_HELP = (
    "training: runs of every job kind (the default). cpu: data set imports and evaluate now, "
    "never behind training; no GPU, no TensorFlow at start."
)


@app.command()
def worker(
    gpu: Annotated[
        int | None,
        typer.Option(min=0, help="Pin this training worker to GPU N and name it gpuN."),
    ] = None,
    gpus: Annotated[
        str | None, typer.Option(metavar="all|0,1|none", help=GPUS_HELP + " Training only.")
    ] = None,
    lane: Annotated[Lane, typer.Option(case_sensitive=False, help=LANE_HELP)] = Lane.TRAINING,
) -> None:
    """A Celery worker (one job at a time) on the settings in force, without the web app.
    On another machine, DATABASE_URL and REDIS_URL (or STACKLAB_BROKER_URL) are all it
    needs (docs/multi-machine.md)."""
    from cli.serve import serve_workers
    from worker.device import GpuSpecError

    with user_errors():
        if gpu is not None and gpus is not None:
            raise CliError("--gpu and --gpus: give one of them")
        if lane is Lane.CPU and (gpu is not None or gpus is not None):
            given = "--gpu" if gpu is not None else "--gpus"
            raise CliError(
                f"{given}: the CPU lane uses no GPU; leave {given} out, or start a training "
                "worker (--lane training) for the GPU"
            )
        try:
            if gpus is not None:
                serve_workers(gpus)  # training workers only: a machine that only trains
            else:
                _exec_worker(gpu, lane)
        except GpuSpecError as err:
            raise CliError(str(err)) from err


def _exec_worker(gpu: int | None, lane: Lane = Lane.TRAINING) -> None:
    """Become the Celery worker of `lane` (pinned to `gpu` when given), so signals reach it
    directly."""
    import os
    import sys

    from cli.processes import lane_worker
    from cli.serve import addresses
    from store.settings import get_settings
    from worker import device

    name = None
    if gpu is not None:
        os.environ.update(device.gpu_env(str(gpu)))
        name = f"gpu{gpu}"
    settings = get_settings()
    worker = lane_worker(lane, name, settings=settings)
    typer.echo(f"{addresses(settings)}\nlane:     {lane.label}")
    sys.stdout.flush()  # before exec replaces this process and its buffers
    os.environ.update(worker.env)
    os.execv(worker.command[0], worker.command)


app.add_typer(data_app, name="data")
app.add_typer(runs_app, name="runs")  # a server's runs, through client/
app.command(
    help=DEMO_HELP,
    short_help="The whole workflow on the demo data, quick by default.",
    no_args_is_help=True,
)(demo)


if __name__ == "__main__":
    app()
