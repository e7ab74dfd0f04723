"""`python -m cli`: the stacklab command without installing the package."""

from __future__ import annotations

from cli.main import app

app(prog_name="stacklab")
