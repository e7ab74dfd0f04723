"""A run on the server: its state, waiting for it, its metrics, files and model."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client import html
from client.errors import RunCancelled, RunFailed, StacklabError
from client.http import Http
from client.progress import DEFAULT_POLL_SECONDS, fraction, poll
from jobspec.metrics import split_key
from jobspec.status import RunStatus

if TYPE_CHECKING:
    import pandas as pd

# The models a run stores, in the order load_model() prefers them: a classifier, then the
# stacked autoencoder a pretrain assembles; otherwise the run's last .keras file.
PREFERRED_MODELS = ("classifier.keras", "stacked_ae.keras")
METRIC_COLUMNS = ("stage", "epoch", "key", "value")


@dataclass(frozen=True)
class Artifact:
    """A file a run stored: name, kind, size in bytes, SHA-256."""

    name: str
    kind: str
    size: int
    sha256: str | None


class Run:
    """One run as the server last answered (`GET /api/runs/{id}`); `refresh()` reads it
    again. `data` holds every field of that answer."""

    def __init__(self, http: Http, data: Mapping[str, Any]) -> None:
        self._http = http
        self.data: dict[str, Any] = dict(data)

    @property
    def id(self) -> int:
        """The run's id."""
        return int(self.data["id"])

    @property
    def kind(self) -> str:
        """Its job kind (pretrain, tune, finetune, ...)."""
        return str(self.data["kind"])

    @property
    def name(self) -> str:
        """Its name."""
        return str(self.data["name"])

    @property
    def status(self) -> RunStatus:
        """Where it stands (jobspec.status.RunStatus)."""
        return RunStatus(self.data["status"])

    @property
    def params(self) -> dict[str, Any]:
        """The job's parameters as the server validated them (defaults filled in)."""
        return dict(self.data.get("params") or {})

    @property
    def result(self) -> dict[str, Any]:
        """What the job returned (empty until it finishes)."""
        return dict(self.data.get("result") or {})

    @property
    def error(self) -> str | None:
        """Why it failed, as the worker stored it."""
        return self.data.get("error")

    @property
    def url(self) -> str:
        """Its page on the server."""
        return f"{self._http.url}/runs/{self.id}"

    @property
    def test_accuracy(self) -> float | None:
        """Accuracy on the test split, for a run that evaluates one (else None)."""
        value = (self.result.get("evaluation") or {}).get("accuracy")
        return None if value is None else float(value)

    def refresh(self) -> Run:
        """Read the run again from the server; returns itself."""
        self.data = dict(self._http.get(f"/api/runs/{self.id}"))
        return self

    def wait(
        self,
        timeout: float | None = None,
        *,
        progress: bool = True,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> Run:
        """Wait until the run finishes, with a progress bar; returns itself once it
        succeeded. Raises RunFailed (with the server's error) or RunCancelled when it ended
        otherwise, WaitTimeout after `timeout` seconds (the run goes on)."""
        poll(
            self.refresh,
            lambda run: run.status.is_finished,
            describe=lambda run: (fraction(run.data.get("progress")), run._note()),
            title=f"run {self.id} {self.kind}",
            show=progress,
            timeout=timeout,
            every=poll_seconds,
        )
        self.check()
        return self

    def check(self) -> None:
        """Raise RunFailed or RunCancelled if the run ended that way."""
        if self.status == RunStatus.FAILED:
            raise RunFailed(self, f"run {self.id} ({self.name}) failed: {self.error}")
        if self.status == RunStatus.CANCELLED:
            raise RunCancelled(self, f"run {self.id} ({self.name}) was cancelled")

    def _note(self) -> str:
        stage = (self.data.get("progress") or {}).get("stage")
        eta = self.data.get("eta_seconds")
        parts = [str(self.status), *([str(stage)] if stage else [])]
        if eta is not None and self.status == RunStatus.RUNNING:
            parts.append(f"~{eta:.0f} s left")
        return " ".join(parts)

    def metrics(self) -> pd.DataFrame:
        """Every epoch metric as a tidy table: stage, epoch, key, value (one row each)."""
        import pandas as pd

        answer = self._http.get(f"/api/runs/{self.id}/metrics.json")
        rows = []
        for stored, series in (answer.get("series") or {}).items():
            stage, key = split_key(stored)
            for step, value in zip(series["steps"], series["values"], strict=True):
                rows.append((stage or "", int(step), key, value))
        frame = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
        return frame.sort_values(["stage", "epoch", "key"], kind="stable", ignore_index=True)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per stored metric key: last, best and kept value and step, and its goal."""
        return dict(self._http.get(f"/api/runs/{self.id}/metrics")["summary"])

    def artifacts(self) -> list[Artifact]:
        """The run's files."""
        answer = self._http.get(f"/api/runs/{self.id}/artifacts")
        return [Artifact(a["name"], a["kind"], int(a["size"]), a.get("sha256")) for a in answer]

    def download(self, directory: str | Path, names: Sequence[str] | None = None) -> list[Path]:
        """Save the run's files (all, or those named) into `directory`; returns their paths.
        Each is checked against the SHA-256 the server stored."""
        folder = Path(directory)
        wanted = [a.name for a in self.artifacts()] if names is None else list(names)
        return [
            self._http.download(f"/api/runs/{self.id}/artifacts/{name}", folder / _plain(name))
            for name in wanted
        ]

    def load_model(self, name: str | None = None, directory: str | Path | None = None) -> Any:
        """The run's Keras model (`name`, else its classifier, else its stacked autoencoder,
        else its last .keras file), downloaded into `directory` (a temporary folder when
        None). Keras is imported here, and only here."""
        if name is None:
            name = default_model([a.name for a in self.artifacts()], run_id=self.id)
        if directory is None:
            with tempfile.TemporaryDirectory(prefix=f"stacklab-run-{self.id}-") as folder:
                return self.load_model(name, folder)
        (path,) = self.download(directory, [name])
        from worker.ml.artifacts import load_model  # registers stacklab's layers, then keras

        return load_model(path)

    def cancel(self) -> Run:
        """Cancel it (a running run stops at its next batch); returns itself, re-read."""
        self.data = dict(self._http.post(f"/api/runs/{self.id}/cancel"))
        return self

    def requeue(self, *, fresh: bool = False, priority: int | None = None) -> Run:
        """Queue a failed or cancelled run again (from its checkpoint unless `fresh`)."""
        body = None if priority is None else {"priority": priority}
        path = f"/api/runs/{self.id}/requeue"
        self.data = dict(self._http.post(path, body, params={"fresh": fresh}))
        return self

    def clone(self, **edits: Any) -> Run:
        """A new run like this one, with edits (params, name, tags, parent_run_id)."""
        return Run(self._http, self._http.post(f"/api/runs/{self.id}/clone", edits or None))

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.kind} {self.name!r} {self.status}>"

    def _repr_html_(self) -> str:
        rows = [
            ("run", html.link(self.url, f"{self.id} {self.name}")),
            ("kind", html.cell(self.kind)),
            ("status", html.cell(self.status)),
            ("progress", html.cell(f"{100 * fraction(self.data.get('progress')):.0f} %")),
            ("test accuracy", html.cell(self.test_accuracy)),
            ("error", html.cell(self.error)),
        ]
        rows += [(key, html.cell(value)) for key, value in sorted(flatten(self.params).items())]
        return html.pairs("stacklab run", rows)


def default_model(names: Sequence[str], *, run_id: int) -> str:
    """The model file load_model() picks among a run's files."""
    for preferred in PREFERRED_MODELS:
        if preferred in names:
            return preferred
    models = [name for name in names if name.endswith(".keras")]
    if not models:
        raise StacklabError(f"run {run_id} stored no .keras model (files: {', '.join(names)})")
    return models[-1]


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"ae01": {"epochs": 2}} -> {"ae01.epochs": 2}: the runs table's param. names."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _plain(name: str) -> str:
    """A file name the server gave, kept inside the target folder."""
    plain = Path(name).name
    if plain in ("", ".", ".."):
        raise StacklabError(f"refusing to write a file named {name!r}")
    return plain
