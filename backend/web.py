"""Page rendering: Jinja2 templates, local static files, Plotly's JS from its package."""

from __future__ import annotations

from pathlib import Path

import plotly
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from backend import formatting

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

templates = Jinja2Templates(directory=TEMPLATES)  # autoescapes .html: user text is safe
templates.env.filters["duration"] = formatting.fmt_duration  # one formatter, every page
templates.env.filters["when"] = formatting.fmt_when
vendor = APIRouter()


@vendor.get("/vendor/plotly.min.js", include_in_schema=False)
def plotly_js() -> FileResponse:
    """Plotly's browser bundle, from the installed plotly package (no CDN)."""
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
    )


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    """A page from templates/, with the request in its context."""
    context.setdefault("status_code", status_code)
    # The guard (backend/security.py) sets these; the header's sign-out form needs them.
    context.setdefault("signed_in", getattr(request.state, "signed_in", False))
    context.setdefault("user", getattr(request.state, "user", None))
    context.setdefault("csrf", getattr(request.state, "csrf", ""))
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def install(app: FastAPI) -> None:
    """Static files and the vendor route."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(vendor)
