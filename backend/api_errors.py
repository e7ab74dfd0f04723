"""Errors as HTTP answers: JSON under /api, a readable page elsewhere, never a traceback.

NotFound -> 404; InvalidRequest -> 422 naming the field (same shape as FastAPI's own);
the database or the job queue away -> 503 with Retry-After and a plain message;
anything else -> 500 with the error page, the details in the server log only.
"""

from __future__ import annotations

import logging

import anyio
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from backend import queue
from backend.config import get_settings
from backend.errors import InvalidRequest, NotFound

log = logging.getLogger(__name__)

TITLES = {
    401: "Sign-in needed",
    403: "Forbidden",
    404: "Not found",
    422: "Invalid request",
    500: "Something went wrong",
    503: "Service unavailable",
}
RETRY_AFTER_SECONDS = 5
DB_DOWN = "The database is not answering; try again in a moment."
DB_BUSY = (
    "The database is busy (a lock or a slow query did not clear in time); try again in a moment."
)
DB_FULL = "Every database connection is in use; try again in a moment."
INTERNAL = "Something went wrong on the server; the server log has the details."
# PostgreSQL's lock_timeout and statement_timeout, SQLite's busy timeout.
_BUSY_STATES = {"55P03", "57014"}


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


def store_message(err: BaseException) -> str | None:
    """What to tell a user about a store error, or None when it is a bug rather than an outage."""
    if isinstance(err, sa_exc.TimeoutError):  # the pool: every connection busy
        return DB_FULL
    if not isinstance(err, sa_exc.DBAPIError):
        return None
    state = getattr(err.orig, "sqlstate", None)
    if state in _BUSY_STATES or "database is locked" in str(err.orig):
        return DB_BUSY
    if isinstance(err, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return DB_DOWN
    return DB_DOWN if err.connection_invalidated else None


def unavailable(request: Request, message: str) -> Response:
    """503 with Retry-After: JSON under /api, the error page for browsers."""
    if wants_page(request):
        response = error_page(request, 503, message)
    else:
        response = JSONResponse(status_code=503, content={"detail": message})
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def internal_error(request: Request, err: Exception) -> Response:
    """500 for whatever nobody expected: logged with its traceback, shown without it."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=err)
    if wants_page(request):
        return error_page(request, 500, INTERNAL)
    return JSONResponse(status_code=500, content={"detail": INTERNAL})


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

    @app.exception_handler(queue.QueueUnavailable)
    async def queue_down(request: Request, err: queue.QueueUnavailable) -> Response:
        log.warning("%s %s: %s (%r)", request.method, request.url.path, err, err.__cause__)
        return unavailable(request, str(err))

    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def store_down(request: Request, err: Exception) -> Response:
        message = store_message(err)
        if message is None:
            return internal_error(request, err)
        log.warning("%s %s: %s (%s)", request.method, request.url.path, message, err)
        return unavailable(request, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> Response:
        return internal_error(request, err)


async def readiness() -> JSONResponse:
    """Can this process serve? The database answers SELECT 1 and the broker takes a connection."""
    settings = get_settings()
    checks = {
        "database": (_ping_database, settings.db_connect_timeout_seconds + 1),
        "queue": (queue.check, 2 * settings.broker_timeout_seconds + 1),
    }
    problems: dict[str, str] = {}

    async def probe(part: str, check, deadline: float) -> None:
        with anyio.move_on_after(deadline) as scope:  # a hung part must not hang the probe
            try:
                await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
            except queue.QueueUnavailable as err:
                problems[part] = str(err)
            except (sa_exc.DBAPIError, sa_exc.TimeoutError) as err:
                problems[part] = store_message(err) or DB_DOWN
        if scope.cancelled_caught:
            problems[part] = f"The {part} did not answer within {deadline:.0f} s."

    async with anyio.create_task_group() as group:
        for part, (check, deadline) in checks.items():
            group.start_soon(probe, part, check, deadline)
    body = {part: "unavailable" if part in problems else "ok" for part in checks}
    if problems:
        body["detail"] = " ".join(problems[part] for part in checks if part in problems)
    return JSONResponse(body, status_code=503 if problems else 200)


def _ping_database() -> None:
    from sqlalchemy import text

    from backend.db import get_engine

    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
