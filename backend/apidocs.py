"""/docs (Swagger UI) and /redoc from files installed with the app: no CDN, no inline script.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and start Swagger UI with an inline
script, which the Content-Security-Policy forbids. The JS and CSS come from the pinned
`fastapi-offline` package; static/js/swagger-init.js starts Swagger UI.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from backend.web import render

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/vendor/docs"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """The interactive API reference (Swagger UI)."""
    return render(request, "docs/swagger.html", assets=ASSETS_URL, openapi_url=_openapi(request))


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    """The API reference as one readable page (ReDoc)."""
    return render(request, "docs/redoc.html", assets=ASSETS_URL, openapi_url=_openapi(request))


def _openapi(request: Request) -> str:
    return request.scope.get("root_path", "") + (request.app.openapi_url or "/openapi.json")


def install(app: FastAPI) -> None:
    """Serve the docs pages and their assets (create the app with docs_url=redoc_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    app.include_router(router)
