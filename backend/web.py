"""Page rendering: Jinja2 templates, local static files, Plotly's JS from its package.

Static files and Plotly's bundle are linked with a version in the URL (`?v=<hash>`), fixed
when the app starts; a versioned URL is cached for a year, any other one is revalidated.
Responses are gzipped (HTML, JSON, JS, CSS), except downloads and images.
"""

from __future__ import annotations

import gzip
import hashlib
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import Scope

from backend import formatting
from jobspec import kinds
from jobspec import status as vocabulary
from store.health import HEALTH
from store.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
PLOTLY_URL = "/vendor/plotly.min.js"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"  # an unversioned URL: the browser asks again (cheap: ETag, 304)
# Artifacts stream weights chunk by chunk with their length and checksum: never re-encoded.
NOT_GZIPPED = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/octet-stream", "image/*")


def plotly_js_path() -> Path:
    """Plotly's browser bundle inside the installed package (found without importing plotly:
    importing it costs the web process ~15 MB it only needs on chart pages)."""
    from importlib.util import find_spec

    spec = find_spec("plotly")
    if spec is None or spec.origin is None:
        raise RuntimeError("plotly is not installed: pip install -e . installs it")
    return Path(spec.origin).parent / "package_data" / "plotly.min.js"


def _static_versions() -> dict[str, str]:
    """URL path -> version, for every file under static/ and the Plotly bundle."""
    versions = {PLOTLY_URL: version("plotly")}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            versions["/static/" + path.relative_to(STATIC).as_posix()] = digest
    return versions


VERSIONS = _static_versions()  # computed once at start: files do not change while serving


def asset(url: str) -> str:
    """`/static/js/api.js` -> `/static/js/api.js?v=<hash>`; an unknown path is a bug."""
    return f"{url}?v={VERSIONS[url]}"


def cache_control(url: str, query_string: bytes) -> str:
    """A year for the current version's URL, revalidate for anything else."""
    asked = parse_qs(query_string.decode("latin-1")).get("v", [None])[0]
    return IMMUTABLE if asked is not None and asked == VERSIONS.get(url) else REVALIDATE


templates = Jinja2Templates(directory=TEMPLATES)  # autoescapes .html: user text is safe
templates.env.filters["duration"] = formatting.fmt_duration  # one formatter, every page
templates.env.filters["when"] = formatting.fmt_when
templates.env.filters["pct"] = formatting.fmt_pct  # fractions as percentages, every page
templates.env.globals["asset"] = asset
# The status vocabulary, defined once in jobspec/status.py: templates compare with its members
# and groups; base.html hands it to the browser as JSON (dom.status in static/js/dom.js).
templates.env.globals.update(
    RunStatus=vocabulary.RunStatus,
    AttemptOutcome=vocabulary.AttemptOutcome,
    ImportState=vocabulary.ImportState,
    ImportPhase=vocabulary.ImportPhase,
    status_vocabulary=vocabulary.vocabulary(),
)
# What a kind's runs show (jobspec.kinds.Features): templates ask the kind, never its name.
templates.env.globals["features"] = kinds.features
vendor = APIRouter()


class VersionedStatic(StaticFiles):
    """StaticFiles whose Cache-Control follows the URL's version."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            url = "/static/" + path.lstrip("/")
            response.headers["Cache-Control"] = cache_control(url, scope["query_string"])
        return response


@cache
def _plotly_gzipped() -> bytes:
    # 4.8 MB -> ~1.4 MB, compressed once per process instead of once per cold page load.
    return gzip.compress(plotly_js_path().read_bytes(), compresslevel=9, mtime=0)


@vendor.get(PLOTLY_URL, include_in_schema=False)
def plotly_js(request: Request) -> Response:
    """Plotly's browser bundle, from the installed plotly package (no CDN), gzipped once."""
    headers = {
        "Cache-Control": cache_control(PLOTLY_URL, request.scope["query_string"]),
        "ETag": f'"plotly-{VERSIONS[PLOTLY_URL]}"',
        "Vary": "Accept-Encoding",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(_plotly_gzipped(), media_type="text/javascript", headers=headers)
    return FileResponse(plotly_js_path(), media_type="text/javascript", headers=headers)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from templates/, with the request in its context."""
    context.setdefault("status_code", status_code)
    # The guard (backend/security.py) sets these; the header's sign-out form needs them.
    context.setdefault("signed_in", getattr(request.state, "signed_in", False))
    context.setdefault("user", getattr(request.state, "user", None))
    context.setdefault("csrf", getattr(request.state, "csrf", ""))
    context.setdefault("store_fault", store_fault())
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def store_fault() -> str:
    """Why the store cannot write, from this process's latest write probe (its upkeep probes
    every heartbeat; a page never waits for a probe), or "" while it writes."""
    settings = get_settings()
    finding = HEALTH.last(max_age=2 * settings.stale_after_seconds + settings.heartbeat_seconds)
    return finding.message if finding and finding.fault and finding.fault.cannot_write else ""


def install(app: FastAPI) -> None:
    """Static files, the vendor route and compression."""
    app.mount("/static", VersionedStatic(directory=STATIC), name="static")
    app.include_router(vendor)
    # Level 5: most of level 9's saving at a third of its CPU, on a machine that also trains.
    app.add_middleware(
        GZipMiddleware, minimum_size=1024, compresslevel=5, exclude_content_types=NOT_GZIPPED
    )
