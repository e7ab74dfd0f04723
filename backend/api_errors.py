"""Errors as HTTP answers: JSON under /api, a readable page elsewhere, never a traceback.

NotFound -> 404; InvalidRequest -> 422 naming the field (same shape as FastAPI's own).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from backend.errors import InvalidRequest, NotFound

TITLES = {401: "Sign-in needed", 403: "Forbidden", 404: "Not found", 422: "Invalid request"}


def wants_page(request: Request) -> bool:
    """Browsers on page URLs get HTML; API clients get JSON."""
    return not request.url.path.startswith(("/api", "/static", "/vendor", "/docs", "/openapi"))


def error_page(request: Request, status_code: int, message: str) -> Response:
    """The error template, escaped like every other page."""
    from backend.web import render

    return render(
        request,
        "error.html",
        status_code=status_code,
        title=TITLES.get(status_code, "Error"),
        message=message,
    )


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    @app.exception_handler(NotFound)
    async def not_found(request: Request, err: NotFound) -> Response:
        if wants_page(request):
            return error_page(request, 404, str(err).capitalize())
        return JSONResponse(status_code=404, content={"detail": str(err)})

    @app.exception_handler(InvalidRequest)
    async def invalid(request: Request, err: InvalidRequest) -> Response:
        detail = [
            {"loc": ["body", *err.field.split(".")], "msg": err.reason, "type": "invalid_request"}
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Response:
        if wants_page(request) and err.status_code in TITLES:
            return error_page(request, err.status_code, str(err.detail))
        return await http_exception_handler(request, err)
