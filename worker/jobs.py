"""Run a job of any registered kind: its worker entry point, found through the registry.

A kind declares `entry="package.module:function"` (jobspec.kinds); the module is imported
when a run of that kind starts (in the pool child, Keras already loaded), so a kind never
run costs nothing. The function takes the validated params and a `JobContext` and returns
a `jobspec.outcome.JobOutcome`; nothing here knows any kind by name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobspec import kinds
from jobspec.outcome import JobOutcome
from jobspec.status import RunStatus
from worker.ml.checkpoint import Checkpoint
from worker.ml.datasets.dataset import Dataset
from worker.ml.reporting import Reporter

Entry = Callable[[Any, "JobContext"], JobOutcome]


@dataclass(frozen=True)
class JobContext:
    """Everything a job gets besides its params: its data, where to write, how to report,
    its parent's files, and the run's study and database (a job that keeps state there)."""

    dataset: Dataset
    out_dir: Path
    reporter: Reporter
    parent_dir: Path | None = None
    study_name: str | None = None
    storage_url: str = ""
    resume: Checkpoint | None = None

    def optuna_storage(self) -> Any:
        """Optuna's RDB storage on our database; SQLite waits for locks instead of failing."""
        import optuna

        url = self.storage_url
        kwargs = (
            {"connect_args": {"timeout": 30}}
            if url.startswith("sqlite")
            else {"pool_pre_ping": True}
        )
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def entry_point(kind: kinds.JobKind[Any]) -> Entry:
    """The kind's entry function, imported now; TypeError when it cannot be called as
    `function(config, context)`."""
    module_name, _, attribute = kind.entry.partition(":")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"{kind.name}: entry {kind.entry!r} is not callable")
    try:
        inspect.signature(function).bind(None, None)
    except TypeError as err:
        raise TypeError(f"{kind.name}: entry {kind.entry!r} must take (config, context)") from err
    return function


def run(
    kind: str,
    params: dict[str, Any],
    *,
    dataset: Dataset,
    out_dir: Path,
    recorder: Reporter,
    parent_dir: Path | None,
    study_name: str | None,
    storage_url: str,
    resume: Checkpoint | None = None,
) -> tuple[RunStatus, dict[str, Any], list[Path]]:
    """Returns (status, result, files) for the run; resume continues from a checkpoint."""
    job = kinds.get(kind)  # KeyError naming the known kinds
    config = job.params(**params)
    context = JobContext(dataset, out_dir, recorder, parent_dir, study_name, storage_url, resume)
    outcome = entry_point(job)(config, context)
    if not isinstance(outcome, JobOutcome):
        raise TypeError(f"{job.entry} returned {type(outcome).__name__}, not a JobOutcome")
    status = RunStatus.CANCELLED if outcome.cancelled else RunStatus.SUCCEEDED
    return status, outcome.stored_result(), list(outcome.files)
