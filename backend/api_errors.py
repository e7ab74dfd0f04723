"""Errors as HTTP answers: JSON under /api, a readable page elsewhere, never a traceback.

NotFound -> 404; InvalidRequest -> 422 naming the field (same shape as FastAPI's own:
`detail` holds the first error, `errors` every one);
FastAPI's own 422 without echoing large input back; an integer parameter beyond what the
database stores -> 404 (path) or 422 (query), never the database's overflow as a 500;
the database or the job queue away -> 503 with Retry-After and a plain message; a store
that answers but cannot write -> 507 (a full disk, a quota) or 503 (read-only, permission,
a damaged file) naming the cause (store.faults), and launches are refused that way while
the last write probe (store.health) says so;
anything else -> 500 with the error page, the details in the server log only.
"""

from __future__ import annotations

import logging
import math
import typing

import anyio
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException

from jobspec.text import shown
from store import queue
from store.errors import FieldError, InvalidRequest, NotFound
from store.faults import StoreFault, classify
from store.health import HEALTH, Finding
from store.settings import get_settings

log = logging.getLogger(__name__)

TITLES = {
    401: "Sign-in needed",
    403: "Forbidden",
    404: "Not found",
    422: "Invalid request",
    500: "Something went wrong",
    503: "Service unavailable",
    507: "Insufficient storage",
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
# PostgreSQL: a number out of range; a character the database cannot store; text longer
# than its column (a limit setting raised past the column's width).
_BAD_VALUE_STATES = {
    "22003": "out_of_range",
    "22021": "bad_text",
    "22P05": "bad_text",
    "22001": "too_long",
}
INT64 = (-(2**63), 2**63 - 1)  # what an id column holds
ECHO_LIMIT = 200  # characters of a request's input a 422 repeats
TOO_LARGE = "A number in the request is out of range."
BAD_VALUES = {
    "out_of_range": TOO_LARGE,
    "bad_text": "Text in the request holds a character that cannot be stored (such as NUL).",
    "too_long": "Text in the request is longer than the database stores for its field.",
}


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
        message=shown(message, limit=2 * ECHO_LIMIT),
    )


def fault_message(fault: StoreFault) -> str:
    """What to tell a user about a store that cannot write, naming the cause."""
    reason = fault.reason[:1].upper() + fault.reason[1:]
    return f"{reason}: nothing new can be saved until that is fixed."


def store_message(err: BaseException) -> str | None:
    """What to tell a user about a store error, or None when it is a bug rather than an outage."""
    answer = store_answer(err)
    return answer[1] if answer else None


def store_answer(err: BaseException) -> tuple[int, str] | None:
    """(status, message) for a store error, or None when it is a bug rather than an outage."""
    if isinstance(err, sa_exc.TimeoutError):  # the pool: every connection busy
        return 503, DB_FULL
    fault = classify(err)
    if fault is None or not isinstance(err, sa_exc.DBAPIError):
        return None
    if fault == StoreFault.LOCKED:
        return 503, DB_BUSY
    if fault == StoreFault.UNREACHABLE:
        return 503, DB_DOWN
    return fault.http_status, fault_message(fault)


class StoreCannotWrite(Exception):
    """The last write probe found the store refusing writes: a launch is refused."""

    def __init__(self, finding: Finding):
        super().__init__(finding.message)
        self.finding = finding


def store_writable() -> None:
    """A dependency of launches: refused (507/503, naming the cause) while the store's last
    write probe, at most STACKLAB_STORE_PROBE_SECONDS old, found it cannot write."""
    from store.db import get_engine

    finding = HEALTH.check(get_engine(), max_age=get_settings().store_probe_seconds)
    if finding.fault is not None and finding.fault.cannot_write:
        raise StoreCannotWrite(finding)


def unavailable(request: Request, message: str, status: int = 503) -> Response:
    """503 (or 507) with Retry-After: JSON under /api, the error page for browsers."""
    if wants_page(request):
        response = error_page(request, status, message)
    else:
        response = JSONResponse(status_code=status, content={"detail": message})
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def internal_error(request: Request, err: Exception) -> Response:
    """500 for whatever nobody expected: logged with its traceback, shown without it."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=err)
    if wants_page(request):
        return error_page(request, 500, INTERNAL)
    return JSONResponse(status_code=500, content={"detail": INTERNAL})


def _int_fields(dependant: Dependant) -> list[tuple[str, str]]:
    """(where, name) of every int path and query parameter of a route and its dependencies."""
    fields = [
        (where, field.alias)
        for where, params in (("path", dependant.path_params), ("query", dependant.query_params))
        for field in params
        if field.field_info.annotation is int or int in typing.get_args(field.field_info.annotation)
    ]
    for sub in dependant.dependencies:
        fields.extend(_int_fields(sub))
    return fields


_INT_FIELDS: dict[int, list[tuple[str, str]]] = {}


def ids_in_range(request: Request) -> None:
    """An app-wide dependency: an int parameter the database cannot hold is refused.

    /api/runs/99999999999999999999 is a 404 (no such run can exist) and ?clone= of the same
    a 422, where they were the database driver's overflow error (a 500).
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    if id(route) not in _INT_FIELDS:  # routes are built once: walk each one once
        _INT_FIELDS[id(route)] = _int_fields(dependant)
    for where, name in _INT_FIELDS[id(route)]:
        raw = (request.path_params if where == "path" else request.query_params).get(name)
        try:  # a {name:int} path convertor has made it an int already
            value = raw if isinstance(raw, int) else int(raw) if _ascii(raw) else None
        except ValueError:
            continue  # not a number: FastAPI's validation says so
        if value is None or INT64[0] <= value <= INT64[1]:
            continue
        if where == "path":
            raise HTTPException(404, f"Not found: {name} {_clip(str(raw), 30)} is out of range.")
        loc = (where, name)
        raise RequestValidationError(
            [{"type": "out_of_range", "loc": loc, "msg": TOO_LARGE, "input": raw}]
        )


def _ascii(raw: object) -> typing.TypeGuard[str]:
    # int() reads "١٢" as 12 but FastAPI's validation refuses it: leave that to FastAPI.
    return isinstance(raw, str) and raw.isascii()


def _clip(value: object, limit: int = ECHO_LIMIT) -> object:
    """A string cut to `limit` characters (a marker says so) and made safe to encode (a lone
    surrogate, NUL or control character becomes U+FFFD); a float JSON cannot hold (inf,
    nan) as text; other values as they are."""
    if isinstance(value, str):
        return shown(value, limit=limit)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def short_errors(errors: typing.Sequence[typing.Mapping[str, typing.Any]]) -> list[dict]:
    """FastAPI's validation errors without large input echoed back (a 1 MB body, a long id)."""
    out = []
    for error in errors:
        item = {key: value for key, value in error.items() if key not in ("input", "ctx", "url")}
        item["loc"] = [_clip(part, 100) for part in error.get("loc", ())][:20]
        item["msg"] = _clip(str(error.get("msg", "")), 2 * ECHO_LIMIT)
        value = error.get("input")
        if "input" in error and (isinstance(value, str | int | float | bool) or value is None):
            item["input"] = _clip(value)  # a short scalar; bodies and lists are left out
        if isinstance(error.get("ctx"), dict):
            item["ctx"] = {
                key: _clip(v) if isinstance(v, int | float | bool) else _clip(str(v))
                for key, v in error["ctx"].items()
            }
        out.append(item)
    return jsonable_encoder(out)


MAX_ERRORS = 100  # errors one 422 lists


def field_error(error: FieldError) -> dict:
    """A store error in FastAPI's shape: {"loc": ["body", ...path], "msg", "type"}."""
    # the field can be a key the request chose (a clone's edits): clipped like the reason
    loc = ["body", *(_clip(part, 100) for part in error.field.split(".")[:10])]
    return {"loc": loc, "msg": _clip(error.reason, 2 * ECHO_LIMIT), "type": error.type}


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, err: RequestValidationError) -> Response:
        errors = short_errors(err.errors())
        return JSONResponse(status_code=422, content={"detail": errors, "errors": errors})

    @app.exception_handler(OverflowError)
    async def overflow(request: Request, err: OverflowError) -> Response:
        # SQLite's driver cannot bind an int beyond 64 bits: the request's fault, not ours.
        log.info("%s %s: %s", request.method, request.url.path, err)
        return _bad_value(request, "out_of_range")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, err: NotFound) -> Response:
        if wants_page(request):
            return error_page(request, 404, str(err).capitalize())
        return JSONResponse(status_code=404, content={"detail": _clip(str(err), 2 * ECHO_LIMIT)})

    @app.exception_handler(InvalidRequest)
    async def invalid(request: Request, err: InvalidRequest) -> Response:
        # `detail` keeps its one (first) error for older clients; `errors` has them all.
        errors = [field_error(e) for e in err.errors[:MAX_ERRORS]]
        return JSONResponse(status_code=422, content={"detail": errors[:1], "errors": errors})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> Response:
        if wants_page(request) and err.status_code in TITLES:
            page = error_page(request, err.status_code, str(err.detail))
            page.headers.update(err.headers or {})  # Retry-After of a 503 (backend/exports.py)
            return page
        if isinstance(err.detail, str):  # a detail can repeat what the request sent
            err.detail = shown(err.detail, limit=2 * ECHO_LIMIT)
        return await http_exception_handler(request, err)

    @app.exception_handler(queue.QueueUnavailable)
    async def queue_down(request: Request, err: queue.QueueUnavailable) -> Response:
        log.warning("%s %s: %s (%r)", request.method, request.url.path, err, err.__cause__)
        return unavailable(request, str(err))

    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def store_down(request: Request, err: Exception) -> Response:
        if kind := _bad_value_kind(err):
            log.info("%s %s: %s", request.method, request.url.path, err)
            return _bad_value(request, kind)
        answer = store_answer(err)
        if answer is None:
            return internal_error(request, err)
        status, message = answer
        log.warning("%s %s: %s (%s)", request.method, request.url.path, message, err)
        return unavailable(request, message, status)

    @app.exception_handler(StoreCannotWrite)
    async def cannot_write(request: Request, err: StoreCannotWrite) -> Response:
        fault = err.finding.fault
        assert fault is not None
        log.warning("%s %s refused: %s", request.method, request.url.path, err.finding.detail)
        return unavailable(request, fault_message(fault), fault.http_status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> Response:
        return internal_error(request, err)


def _bad_value_kind(err: BaseException) -> str | None:
    """A value the database refused to store, which only the request can have sent.

    PostgreSQL's "out of range" and "cannot store this character", psycopg's refusal of
    NUL bytes, SQLite's OverflowError: each wrapped by SQLAlchemy.
    """
    orig = getattr(err, "orig", None)
    if isinstance(orig, OverflowError):
        return "out_of_range"
    if kind := _BAD_VALUE_STATES.get(getattr(orig, "sqlstate", None) or ""):
        return kind
    return "bad_text" if "NUL (0x00)" in str(orig) else None


def _bad_value(request: Request, kind: str) -> Response:
    """422: a number or a character in the request the database cannot hold."""
    if wants_page(request):
        return error_page(request, 422, BAD_VALUES[kind])
    detail = [{"type": kind, "loc": ["request"], "msg": BAD_VALUES[kind]}]
    return JSONResponse(status_code=422, content={"detail": detail})


async def readiness() -> JSONResponse:
    """Can this process serve? The database takes a write (a probe, rolled back; reused for
    STACKLAB_STORE_PROBE_SECONDS) and the broker takes a connection. A store that cannot
    write names its fault (`database_fault`: disk_full, read_only...) and the cause."""
    settings = get_settings()
    faults: dict[str, str] = {}

    def probe_database() -> None:
        from sqlalchemy import text

        from store.db import get_engine

        with get_engine().connect() as conn:  # answering is checked every time
            conn.execute(text("SELECT 1"))
        finding = HEALTH.check(get_engine(), max_age=settings.store_probe_seconds)
        if finding.fault is not None:
            faults["database_fault"] = finding.fault.value
            problems["database"] = finding.message

    checks = {
        "database": (probe_database, 2 * settings.db_connect_timeout_seconds + 1),
        "queue": (queue.check, 2 * settings.broker_timeout_seconds + 1),
    }
    problems: dict[str, str] = {}

    async def probe(part: str, check: typing.Callable[[], object], deadline: float) -> None:
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
    body.update(faults)
    if problems:
        body["detail"] = " ".join(problems[part] for part in checks if part in problems)
    return JSONResponse(body, status_code=503 if problems else 200)
