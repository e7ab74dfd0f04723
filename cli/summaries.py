"""What each command prints at the end and writes to summary.json in its output folder."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli.errors import CANCELLED_EXIT_CODE
from jobspec.stages import TRIAL_STAGE  # no imports of its own

if TYPE_CHECKING:
    from worker.ml.datasets.dataset import Dataset

SUMMARY_FILE = "summary.json"
TRIAL_KEYS = ("number", "state", "value", "params", "seconds")


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s' or '1 h 02 min'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def number(value: float | None, digits: int = 4) -> str:
    """A metric for a table, '-' when missing."""
    return "-" if value is None else f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Plain left-aligned columns, two spaces apart."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]


def dataset_brief(dataset: Dataset) -> dict[str, Any]:
    """Which data a job saw, for summary.json."""
    return {
        "name": dataset.name,
        "source": dataset.source,
        "fingerprint": dataset.fingerprint(),
        "n_train": len(dataset.y_train),
        "n_test": len(dataset.y_test),
        "num_classes": dataset.num_classes,
    }


def relative_files(files: Sequence[Path], out_dir: Path) -> list[str]:
    """File names relative to the output folder, as the summary lists them."""
    result = []
    for path in files:
        try:
            result.append(str(Path(path).resolve().relative_to(out_dir.resolve())))
        except ValueError:
            result.append(str(path))
    return sorted(set(result))


def write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    """summary.json in out_dir, written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SUMMARY_FILE
    # Not mkstemp: its 0600 mode would hide the file from other users of a shared box.
    tmp = out_dir / f".{SUMMARY_FILE}.{os.getpid()}.tmp"
    with tmp.open("w") as fh:
        json.dump(summary, fh, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)
    return path


def record(out_dir: Path, summary: dict[str, Any], lines: list[str]) -> None:
    """Write summary.json (with the output folder in it) and print the lines."""
    summary["out_dir"] = str(out_dir.resolve())
    write_summary(out_dir, summary)
    for line in lines:
        typer.echo(line)


def finish(out_dir: Path, summary: dict[str, Any], lines: list[str]) -> None:
    """Record the summary, say where the files are; exit 130 if the job was cancelled."""
    record(out_dir, summary, lines)
    typer.echo(f"Output: {summary['out_dir']} (see {SUMMARY_FILE})")
    if summary.get("cancelled"):
        typer.secho("Cancelled: kept and saved what was done so far.", fg=typer.colors.YELLOW)
        raise typer.Exit(CANCELLED_EXIT_CODE)


def pretrain_summary(result: Any, dataset: Dataset, seconds: float, out_dir: Path) -> dict:
    """summary.json content of a pretrain run."""
    from jobspec.builtin_kinds import PRETRAIN  # loaded already: the job has run

    return {
        "command": PRETRAIN.name,
        "dataset": dataset_brief(dataset),
        "seconds": round(seconds, 1),
        "cancelled": result.cancelled,
        "test_reconstruction_loss": result.test_reconstruction_loss,
        "stages": result.stages,
        "files": relative_files(result.files, out_dir),
    }


def pretrain_lines(summary: dict) -> list[str]:
    """Per-stage table and test reconstruction error."""
    rows = [
        [stage, s["epochs_run"], number(s["final"].get("loss")),
         number(s["final"].get("val_loss")), duration(s["seconds"])]
        for stage, s in summary["stages"].items()
    ]  # fmt: skip
    return [
        f"pretrain finished in {duration(summary['seconds'])}",
        *table(["stage", "epochs", "loss", "val_loss", "time"], rows),
        f"test reconstruction MSE: {number(summary['test_reconstruction_loss'], 5)}",
    ]


def evaluation_brief(evaluation: Any) -> dict | None:
    """The headline scores of an Evaluation (all of it is in evaluation.json)."""
    if evaluation is None:
        return None
    return {"accuracy": evaluation.accuracy, "balanced_accuracy": evaluation.balanced_accuracy}


def finetune_summary(result: Any, dataset: Dataset, seconds: float, out_dir: Path) -> dict:
    """summary.json content of a finetune run."""
    from jobspec.builtin_kinds import FINETUNE

    return {
        "command": FINETUNE.name,
        "dataset": dataset_brief(dataset),
        "seconds": round(seconds, 1),
        "cancelled": result.cancelled,
        "training": result.training,
        "evaluation": evaluation_brief(result.evaluation),
        "files": relative_files(result.files, out_dir),
    }


def finetune_lines(summary: dict) -> list[str]:
    """Epochs, best epoch and test scores."""
    training, scores = summary["training"], summary["evaluation"]
    best = training.get("best_epoch")
    ran = f"{training['epochs_run']} epoch(s)"
    if training.get("stopped_early") and training.get("epochs_planned"):
        ran = f"stopped early at epoch {training['epochs_run']} of {training['epochs_planned']}"
    lines = [
        f"finetune finished in {duration(summary['seconds'])}: {ran}, "
        f"kept epoch {best if best is not None else '-'} "
        f"({training.get('monitor', 'val_loss')} {number(training.get('best_value'))})"
    ]
    if scores:
        lines.append(
            f"test accuracy {number(scores['accuracy'])}, "
            f"balanced accuracy {number(scores['balanced_accuracy'])}"
        )
    return lines


def tune_summary(result: Any, dataset: Dataset, seconds: float, out_dir: Path) -> dict:
    """summary.json content of a tune run."""
    from jobspec.builtin_kinds import TUNE

    return {
        "command": TUNE.name,
        "dataset": dataset_brief(dataset),
        "seconds": round(seconds, 1),
        "cancelled": result.cancelled,
        "study_name": result.study_name,
        "storage": result.storage,
        "best_params": result.best_params,
        "best_value": result.best_value,
        "trials": [{k: t[k] for k in TRIAL_KEYS} for t in result.trials],
        "files": relative_files(result.files, out_dir),
    }


def tune_lines(summary: dict) -> list[str]:
    """Every trial of the study, then the best parameters."""
    rows = [[t["number"], t["state"], number(t["value"], 5),
             ", ".join(f"{k}={v}" for k, v in t["params"].items())]
            for t in summary["trials"]]  # fmt: skip
    best = ", ".join(f"{k}={v}" for k, v in summary["best_params"].items()) or "-"
    return [
        f"tune finished in {duration(summary['seconds'])}: study {summary['study_name']!r}",
        # The first column is each trial's number, the N of its stage "trial-N".
        *table([TRIAL_STAGE, "state", "val_loss", "params"], rows),
        f"best: {best} (val_loss {number(summary['best_value'], 5)})",
        f"storage: {summary['storage']}",
    ]


def evaluate_summary(
    evaluation: Any, files: list, dataset: Dataset, *, model: Path, seconds: float, out_dir: Path
) -> dict:
    """summary.json content of an evaluate run."""
    return {
        "command": "evaluate",
        "model": str(model.resolve()),
        "dataset": dataset_brief(dataset),
        "seconds": round(seconds, 1),
        "evaluation": evaluation_brief(evaluation),
        "per_class": evaluation.per_class,
        "files": relative_files(files, out_dir),
    }


def evaluate_lines(summary: dict) -> list[str]:
    """Headline scores and a per-class table."""
    rows = [
        [name, number(s["precision"], 3), number(s["recall"], 3), number(s["f1"], 3), s["support"]]
        for name, s in summary["per_class"].items()
    ]
    scores = summary["evaluation"]
    return [
        f"test accuracy {number(scores['accuracy'])}, "
        f"balanced accuracy {number(scores['balanced_accuracy'])} "
        f"on {summary['dataset']['n_test']} images",
        *table(["class", "precision", "recall", "f1", "support"], rows),
    ]
