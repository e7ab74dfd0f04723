"""Loading data and running the core's jobs for the commands (heavy imports stay inside)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import CliError, data_errors

if TYPE_CHECKING:
    from worker.ml.datasets.dataset import Dataset

# TensorFlow's C++ start-up chatter (oneDNN, CPU feature notices) hides the command's output;
# set before any command imports it. (The worker's child sets it in worker.device.prepare.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SUBSET_SEED = 0  # fixed, so every job of a workflow sees the same subset whatever --seed is


def load_data(
    spec: str,
    *,
    resize: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
    option: str = "--data",
) -> Dataset:
    """The dataset named by --data, cut to the limits; bad data is a CliError."""
    from worker.ml.datasets.load import load_dataset

    with data_errors(option):
        dataset = load_dataset(spec, resize=resize)
        return limit(dataset, train_limit=train_limit, test_limit=test_limit)


def limit(dataset: Dataset, *, train_limit: int | None, test_limit: int | None) -> Dataset:
    """A stratified subset when a limit is below a split's size; the dataset otherwise."""
    n_train = train_limit if train_limit and train_limit < len(dataset.y_train) else None
    n_test = test_limit if test_limit and test_limit < len(dataset.y_test) else None
    if n_train is None and n_test is None:
        return dataset
    return dataset.subset(n_train=n_train, n_test=n_test, seed=SUBSET_SEED)


def check_pretrained(path: Path | None, stages: tuple[str, ...], *, why: str) -> Path:
    """The --pretrained folder, after checking it holds the trained stages needed."""
    if path is None:
        raise CliError(f"--pretrained: {why} needs the output folder of 'stacklab pretrain'")
    manifest = path / "pretrain.json"
    if not manifest.is_file():
        raise CliError(f"--pretrained: {path} is not a pretrain output folder (no pretrain.json)")
    try:
        trained = json.loads(manifest.read_text()).get("trained_stages", [])
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise CliError(f"--pretrained: cannot read {manifest}: {exc}") from exc
    missing = [stage for stage in stages if stage not in trained]
    if missing:
        raise CliError(
            f"--pretrained: {path} has no trained {', '.join(missing)} (that run was cut short?)"
        )
    return path


def run_with_progress(job: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """Run a core job with terminal progress and Ctrl-C handling; return (result, seconds)."""
    from cli.progress import TqdmReporter

    # TensorFlow's Python warnings (tf.function retracing, ...) are not for a CLI user.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    start = time.perf_counter()
    with TqdmReporter() as reporter, data_errors():
        result = job(*args, reporter=reporter, **kwargs)
    # Ctrl-C after the last batch: the job ran to the end, but the user wants out, and a
    # workflow such as `demo` must not go on to its next job.
    result.cancelled = result.cancelled or reporter.stop_requested
    return result, time.perf_counter() - start


def pretrain(dataset: Dataset, config: Any, out_dir: Path) -> tuple[Any, float]:
    """Layer-wise pretraining into out_dir."""
    from worker.ml.pretrain import pretrain as job

    return run_with_progress(job, dataset, config, out_dir=out_dir)


def finetune(
    dataset: Dataset, config: Any, out_dir: Path, pretrained: Path | None
) -> tuple[Any, float]:
    """Classifier training into out_dir."""
    from worker.ml.finetune import finetune as job

    return run_with_progress(job, dataset, config, out_dir=out_dir, pretrained_dir=pretrained)


def tune(
    dataset: Dataset, config: Any, out_dir: Path, *, storage: str | None, pretrained: Path | None
) -> tuple[Any, float]:
    """This process's share of an Optuna study; results into out_dir."""
    from worker.ml.tune import tune as job

    return run_with_progress(
        job, dataset, config, out_dir=out_dir, storage=storage, pretrained_dir=pretrained
    )


def check_model(model_path: Path) -> None:
    """Refuse a --model that is not a .keras file before any data is loaded."""
    if not model_path.is_file():
        raise CliError(f"--model: {model_path} does not exist")
    if model_path.suffix != ".keras":
        raise CliError(f"--model: {model_path} is not a .keras model file")


def evaluate(model_path: Path, dataset: Dataset, out_dir: Path) -> tuple[Any, list, float]:
    """Score a saved classifier on the test split; a model that does not fit is a CliError."""
    from worker.ml.evaluate import evaluate_saved

    check_model(model_path)
    start = time.perf_counter()
    try:
        evaluation, files = evaluate_saved(model_path, dataset, out_dir)
    except ValueError as exc:  # not a Keras model, or a class count that does not match
        raise CliError(f"--model: {exc}") from exc
    return evaluation, files, time.perf_counter() - start
