"""`python -m worker.cli`: the stacklab command without installing the package."""

from __future__ import annotations

from worker.cli.main import app

app(prog_name="stacklab")
