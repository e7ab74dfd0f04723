"""The experiment report of a pretrain run (`GET /api/experiments/{id}`), as data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client import html
from client.http import Http
from client.runs import flatten

if TYPE_CHECKING:
    import pandas as pd


class Report:
    """A pretrain with its tunes, finetunes (test scores) and studies (verdicts)."""

    def __init__(self, http: Http, data: Mapping[str, Any]) -> None:
        self._http = http
        self.data: dict[str, Any] = dict(data)

    @property
    def id(self) -> int:
        """The pretrain run's id."""
        return int(self.data["id"])

    @property
    def url(self) -> str:
        """The report's page on the server."""
        return f"{self._http.url}/experiments/{self.id}"

    @property
    def stages(self) -> pd.DataFrame:
        """The pretrain's autoencoder stages: epochs, best validation loss, seconds."""
        import pandas as pd

        return pd.DataFrame(self.data["root"]["stages"])

    @property
    def tunes(self) -> pd.DataFrame:
        """The tunes of this experiment: stage, trials, best value and parameters."""
        import pandas as pd

        return pd.DataFrame([flatten(row) for row in self.data["tunes"]])

    @property
    def finetunes(self) -> pd.DataFrame:
        """One row per finetune: encoder, augmentation, seed, kept epoch and test scores."""
        import pandas as pd

        rows = [
            {k: v for k, v in flatten(row).items() if k not in ("warnings", "notes")}
            for row in self.data["finetunes"]
        ]
        return pd.DataFrame(rows)

    @property
    def verdicts(self) -> list[str]:
        """Each study's verdict sentence."""
        return [str((s.get("verdict") or {}).get("text", "")) for s in self.data["studies"]]

    def save_html(self, path: str | Path) -> Path:
        """The report as one offline HTML file (figures inlined), as the page exports it."""
        return self._http.download(f"/experiments/{self.id}/report.html", Path(path))

    def _repr_html_(self) -> str:
        root = self.data["root"]
        head = html.pairs(
            "stacklab experiment",
            [
                ("pretrain", html.link(self.url, f"{self.id} {root['name']}")),
                ("data set", html.cell(self.data["dataset"]["name"])),
                ("test reconstruction loss", html.cell(root.get("test_reconstruction_loss"))),
                *(("verdict", html.cell(text)) for text in self.verdicts),
            ],
        )
        rows = [
            (f["id"], f["name"], f["encoder"], f["augment"], f["seed"], f["status"])
            for f in self.data["finetunes"]
        ]
        return head + html.grid(("id", "name", "encoder", "augment", "seed", "status"), rows)
