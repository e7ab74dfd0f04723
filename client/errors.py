"""What the client raises: the server's answer when it refuses, a run that ended badly.

Every HTTP refusal is an `ApiError` carrying the status and the server's message; a 422
also carries each field the server named (`backend/api_errors.py`: `errors` holds every
one as `{"loc": [...], "msg": ..., "type": ...}`), so a notebook shows which parameter
was wrong and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.runs import Run


class StacklabError(Exception):
    """Anything the client raises on purpose."""


@dataclass(frozen=True)
class FieldMessage:
    """One field the server refused: where (`body.params.epochs`), why, and its error type."""

    field: str
    message: str
    type: str = ""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ApiError(StacklabError):
    """The server answered with an error status."""

    def __init__(
        self, status: int, message: str, fields: Sequence[FieldMessage] = (), *, url: str = ""
    ) -> None:
        self.status = status
        self.message = message
        self.fields = tuple(fields)
        self.url = url
        super().__init__(self._text())

    def _text(self) -> str:
        if self.fields:
            return f"{self.status}: " + "; ".join(str(f) for f in self.fields)
        return f"{self.status}: {self.message}"


class InvalidRequest(ApiError):
    """422: the server refused the request's values; `fields` names each one."""


class NotFound(ApiError):
    """404: no such run, group or file."""


class AuthenticationError(ApiError):
    """401 or 403: the token is missing, wrong, or not allowed."""


class Unavailable(ApiError):
    """503 or 507: the database or the queue is away, or the store cannot write; retry
    later (`retry_after` seconds, when the server said)."""

    def __init__(
        self,
        status: int,
        message: str,
        fields: Sequence[FieldMessage] = (),
        *,
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, message, fields, url=url)
        self.retry_after = retry_after


class ServerUnreachable(StacklabError):
    """No HTTP answer at all: the address is wrong or the server is down."""


class RunEnded(StacklabError):
    """A run waited for ended without succeeding; `run` is its last state."""

    def __init__(self, run: Run, message: str) -> None:
        self.run = run
        super().__init__(message)


class RunFailed(RunEnded):
    """The run failed; `run.error` holds the server's error."""


class RunCancelled(RunEnded):
    """The run was cancelled."""


class WaitTimeout(StacklabError):
    """wait(timeout=...) gave up before the run finished (the run goes on)."""


def _location(loc: object) -> str:
    """["body", "params", "epochs"] -> "params.epochs"; a query or path keeps its place."""
    parts = [str(p) for p in loc] if isinstance(loc, list | tuple) else [str(loc)]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts)


def field_messages(body: object) -> list[FieldMessage]:
    """The fields of a 422 body (`errors`, else a list `detail`), in the server's order."""
    if not isinstance(body, Mapping):
        return []
    items: object = body.get("errors")
    if not isinstance(items, list):
        items = body.get("detail")
    if not isinstance(items, list):
        return []
    return [
        FieldMessage(
            _location(item.get("loc", ())), str(item.get("msg", "")), str(item.get("type", ""))
        )
        for item in items
        if isinstance(item, Mapping)
    ]


def message_of(body: object, fallback: str) -> str:
    """The server's `detail` sentence, or the first field's message, or `fallback`."""
    if isinstance(body, Mapping):
        detail: Any = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
    fields = field_messages(body)
    return str(fields[0]) if fields else fallback


def api_error(status: int, body: object, *, url: str, retry_after: str | None) -> ApiError:
    """The typed error for an answer with an error status."""
    message = message_of(body, f"HTTP {status}")
    fields = field_messages(body)
    if status == 422:
        return InvalidRequest(status, message, fields, url=url)
    if status == 404:
        return NotFound(status, message, url=url)
    if status in (401, 403):
        return AuthenticationError(status, message, url=url)
    if status in (503, 507):
        after = float(retry_after) if retry_after and retry_after.isdigit() else None
        return Unavailable(status, message, fields, url=url, retry_after=after)
    return ApiError(status, message, fields, url=url)
