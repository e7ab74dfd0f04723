"""An ablation study on the server (`GET /api/groups/{id}/ablation`): its arms, its
per-seed table and its verdict, as data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from client import html
from client.http import Http
from client.progress import DEFAULT_POLL_SECONDS, poll
from client.runs import Run, flatten
from jobspec.status import RunStatus

if TYPE_CHECKING:
    import pandas as pd

ARM_COLUMNS = ("name", "label", "role", "runs", "finished")
RUN_COLUMNS = ("id", "name", "status", "arm", "seed", "value", "accuracy", "balanced_accuracy")


class Study:
    """One ablation study as the server last judged it; `refresh()` reads it again.
    `data` holds the whole answer (the study page's figures and tests included)."""

    def __init__(self, http: Http, group_id: int, data: Mapping[str, Any] | None = None) -> None:
        self._http = http
        self.group_id = group_id
        self.data: dict[str, Any] = dict(data) if data is not None else {}
        if data is None:
            self.refresh()

    def refresh(self) -> Study:
        """Read the study again (a verdict changes as its runs finish)."""
        self.data = dict(self._http.get(f"/api/groups/{self.group_id}/ablation"))
        return self

    @property
    def url(self) -> str:
        """Its page on the server."""
        return f"{self._http.url}/groups/{self.group_id}"

    @property
    def verdict(self) -> str:
        """The verdict sentence, as the study page says it."""
        return str(self.data["verdict"]["text"])

    @property
    def outcome(self) -> str:
        """helped, hurt, inconclusive, too_few or at_chance."""
        return str(self.data["verdict"]["outcome"])

    @property
    def difference(self) -> dict[str, Any]:
        """The paired difference (treatment minus baseline, in points): n, mean, sd, CI,
        the effect it can detect and the seeds a smaller one would need."""
        return dict(self.data["difference"])

    @property
    def metric(self) -> str:
        """The metric the verdict is about (accuracy, balanced_accuracy, ...)."""
        return str(self.data["metric"]["name"])

    @property
    def arms(self) -> pd.DataFrame:
        """One row per arm: name, label, role, runs, finished, and each study metric's
        n/mean/sd in points (`accuracy.mean`...)."""
        import pandas as pd

        rows = [
            {key: arm[key] for key in ARM_COLUMNS} | flatten(arm["metrics"])
            for arm in self.data["arms"]
        ]
        return pd.DataFrame(rows)

    @property
    def per_seed(self) -> pd.DataFrame:
        """One row per seed where both arms finished: each arm's run id and value (points),
        their difference and the McNemar test on the test images."""
        import pandas as pd

        return pd.DataFrame([flatten(pair) for pair in self.data["pairs"]])

    @property
    def runs(self) -> pd.DataFrame:
        """The study's runs: id, name, status, arm, seed, value (points) and scores."""
        import pandas as pd

        rows = [{key: row.get(key) for key in RUN_COLUMNS} for row in self.data["runs"]]
        return pd.DataFrame(rows, columns=list(RUN_COLUMNS))

    @property
    def running(self) -> bool:
        """Whether any of its runs is still queued or running."""
        return bool(self.data["running"])

    def wait(
        self,
        timeout: float | None = None,
        *,
        progress: bool = True,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        check: bool = True,
    ) -> Study:
        """Wait until none of its runs is queued or running (a bar counts finished runs);
        then, with `check`, RunFailed or RunCancelled for the first run that ended so."""
        poll(
            self.refresh,
            lambda study: not study.running,
            describe=lambda study: study._done(),
            title=f"study {self.group_id}",
            show=progress,
            timeout=timeout,
            every=poll_seconds,
        )
        if check:
            self.check()
        return self

    def check(self) -> None:
        """Raise for the first of its runs that failed or was cancelled."""
        for row in self.data["runs"]:
            if RunStatus(row["status"]) in RunStatus.stopped():
                run = Run(self._http, self._http.get(f"/api/runs/{row['id']}"))
                run.check()

    def _done(self) -> tuple[float, str]:
        rows = self.data["runs"]
        finished = sum(RunStatus(row["status"]).is_finished for row in rows)
        return (finished / len(rows) if rows else 0.0), f"{finished}/{len(rows)} runs finished"

    def __repr__(self) -> str:
        return f"<Study {self.group_id} {self.data['factor']['name']}: {self.outcome}>"

    def _repr_html_(self) -> str:
        factor = self.data["factor"]
        head = html.pairs(
            "stacklab study",
            [
                ("study", html.link(self.url, f"{self.group_id} {self.data['group']['name']}")),
                ("question", html.cell(factor["question"])),
                ("metric", html.cell(self.data["metric"]["label"])),
                ("verdict", html.cell(self.verdict)),
            ],
        )
        arms = [
            (arm["label"], arm["role"], arm["finished"], arm["metrics"][self.metric]["mean"])
            for arm in self.data["arms"]
        ]
        seeds = [
            (p["seed"], p["baseline"]["value"], p["treatment"]["value"], p["difference"])
            for p in self.data["pairs"]
        ]
        return (
            head
            + html.grid(("arm", "role", "finished", f"{self.metric} mean (points)"), arms)
            + html.grid(("seed", "baseline", "treatment", "difference"), seeds)
        )
