"""The Python client of a stacklab server: `from client.api import Client`.

    lab = Client("http://gpu-box:8000")          # token: token=... or STACKLAB_TOKEN
    pre = lab.launch("pretrain", "demo", preset="quick").wait()
    study = lab.ablation("augmentation", "demo", parent=pre, seeds=3, preset="quick").wait()
    study.verdict, study.per_seed, lab.runs(kind="finetune")

Imports neither TensorFlow, Keras, FastAPI, SQLAlchemy nor Celery (pandas on first use
of a table; Keras only in Run.load_model). Every refusal of the server is a typed error
from client.errors carrying its message and the fields it named.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client import frames
from client.errors import StacklabError
from client.http import DEFAULT_TIMEOUT, Http
from client.reports import Report
from client.runs import Run
from client.studies import Study

if TYPE_CHECKING:
    import httpx
    import pandas as pd

RunRef = Run | int


class Client:
    """A stacklab server at `url`, with a token (`token=`, else STACKLAB_TOKEN, else
    none: an open server)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = Http(url, token=token, timeout=timeout, transport=transport)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.http.url

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def launch(
        self,
        kind: str,
        dataset: str,
        params: Mapping[str, Any] | None = None,
        *,
        preset: str | None = None,
        parent: RunRef | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        priority: int | None = None,
        needs_gpu: bool = False,
    ) -> Run:
        """Queue a run of `kind` on `dataset`: `params` over the kind's `preset` (quick,
        seed or full; jobspec/presets.py) over its defaults. Returns the queued run."""
        body: dict[str, Any] = {
            "kind": kind,
            "dataset": dataset,
            "params": with_preset(kind, preset, params),
            "tags": list(tags),
            "needs_gpu": needs_gpu,
        }
        body |= _optional(name=name, parent_run_id=_id(parent), priority=priority)
        return Run(self.http, self.http.post("/api/runs", body)[0])

    def ablation(
        self,
        factor: str,
        dataset: str,
        params: Mapping[str, Any] | None = None,
        *,
        seeds: int | Sequence[int] = 3,
        parent: RunRef | None = None,
        preset: str | None = None,
        metric: str | None = None,
        split_seed: int | str | None = None,
        name: str | None = None,
        priority: int | None = None,
    ) -> Study:
        """Queue an ablation study of `factor` (augmentation, pretraining, encoder,
        class_weights, freeze_encoder): both arms for each seed, sharing the finetune
        `params` (over the finetune `preset`). Returns the study."""
        from jobspec.builtin_kinds import FINETUNE

        body: dict[str, Any] = {
            "dataset": dataset,
            "factor": factor,
            "params": with_preset(FINETUNE.name, preset, params),
            "seeds": seeds if isinstance(seeds, int) else list(seeds),
        }
        body |= _optional(
            name=name,
            parent_run_id=_id(parent),
            metric=metric,
            split_seed=split_seed,
            priority=priority,
        )
        created = self.http.post("/api/ablations", body)
        return Study(self.http, int(created["group_id"]))

    def run(self, run: RunRef) -> Run:
        """One run, read now."""
        return Run(self.http, self.http.get(f"/api/runs/{_id(run)}"))

    def clone(self, run: RunRef, **edits: Any) -> Run:
        """A new run like `run`, with edits (params, name, tags, parent_run_id)."""
        return Run(self.http, self.http.post(f"/api/runs/{_id(run)}/clone", edits or None))

    def cancel(self, run: RunRef) -> Run:
        """Cancel a queued run, or stop a running one at its next batch."""
        return Run(self.http, self.http.post(f"/api/runs/{_id(run)}/cancel"))

    def requeue(self, run: RunRef, *, fresh: bool = False, priority: int | None = None) -> Run:
        """Queue a failed or cancelled run again (from its checkpoint unless `fresh`)."""
        return self.run(run).requeue(fresh=fresh, priority=priority)

    def study(self, group_id: int) -> Study:
        """An ablation study: arms, per-seed table and verdict."""
        return Study(self.http, group_id)

    def report(self, pretrain: RunRef) -> Report:
        """The experiment report of a pretrain run: its tunes, finetunes and studies."""
        return Report(self.http, self.http.get(f"/api/experiments/{_id(pretrain)}"))

    def datasets(self) -> list[dict[str, Any]]:
        """The data sets in the store."""
        return list(self.http.get("/api/datasets"))

    def runs(self, **filters: Any) -> pd.DataFrame:
        """Runs as a DataFrame, one row per run and one column per parameter and metric:
        the server's CSV export of the runs table (`param.<name>`, `metric.<key>`), up to
        10,000 runs. Filters: kind, status, group_id, tag, dataset, q, archived, filter
        (the runs page's language), sort, order."""
        return frames.runs_frame(self.http.text("/api/runs/table.csv", frames.query(filters)))

    def table(
        self, *, limit: int | None = None, page_size: int = 100, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """The runs table's rows (JSON), page after page through `next_cursor`; stops
        after `limit` rows when given. Same filters as runs()."""
        query: dict[str, Any] = {**frames.query(filters), "limit": page_size}
        given = 0
        while True:
            page = self.http.get("/api/runs/table", query)
            for row in page["items"]:
                if limit is not None and given >= limit:
                    return
                given += 1
                yield row
            if not page.get("next_cursor"):
                return
            query["cursor"] = page["next_cursor"]

    def download(self, run: RunRef, directory: str | Path) -> list[Path]:
        """Every file of a run, saved into `directory`."""
        return self.run(run).download(directory)

    def __repr__(self) -> str:
        return f"<Client {self.url}>"


def with_preset(kind: str, preset: str | None, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The params to send: a preset's values (jobspec/presets.py), then `params` over them."""
    out: dict[str, Any] = {}
    if preset is not None:
        from jobspec import presets

        offered = [str(name) for name in presets.of(kind)]
        if preset not in offered:
            named = ", ".join(offered) or "none"
            raise StacklabError(f"preset {preset!r}: {kind} offers {named}")
        for path, value in presets.values(kind, presets.PresetName(preset)).items():
            node = out
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return _merged(out, params or {})


def _merged(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            out[key] = _merged(old, value)
        else:
            out[key] = value
    return out


def _id(run: RunRef | None) -> int | None:
    return run.id if isinstance(run, Run) else run


def _optional(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
