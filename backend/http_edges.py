"""The HTTP/1.1 protocol the web serves with: uvicorn's h11 one, with limits that answer 431.

`stacklab serve`, the tests and the compose file start uvicorn with
`--http backend.http_edges:EdgeProtocol` (cli/processes.py `web_command`). Why not httptools,
uvicorn's default when it is installed: it joins the pieces of a header value by repeated
concatenation with no cap, so one 40 MB header held the event loop for seconds (quadratic),
and every other request waited. h11 keeps an incomplete request head in one buffer and
refuses it past `max_incomplete_event_size`; here that is STACKLAB_MAX_HEADER_KB, and the
refusal is the 431 h11 asks for (uvicorn itself answers every protocol error with 400).
STACKLAB_MAX_HEADERS caps the number of header fields the same way. Both are read from the
settings in the web's own process, so any way of starting it with this class gets them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import ServerState

from store.settings import get_settings


class _Refused(h11.RemoteProtocolError):
    """A request head over one of our limits (h11's own errors pass as they are)."""


class _Connection(h11.Connection):
    """h11's server connection that also counts header fields and keeps the last error."""

    def __init__(self, *, max_head: int, max_headers: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head)
        self.max_head, self.max_headers = max_head, max_headers
        self.error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as err:
            self.error = err
            raise
        if isinstance(event, h11.Request) and (problem := self._over(event)):
            self._process_error(self.their_role)  # nothing more is read from this peer
            self.error = _Refused(problem, 431)
            raise self.error
        return event

    def _over(self, request: h11.Request) -> str | None:
        """The limit a complete request head is over. (h11 checks the size only while the
        head is incomplete: one that arrived in a single read of up to 256 KiB passes.)"""
        if len(request.headers) > self.max_headers:
            return f"more than {self.max_headers} header fields (STACKLAB_MAX_HEADERS)"
        size = len(request.method) + len(request.target) + 12  # "GET / HTTP/1.1\r\n"
        size += sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())
        return _too_large(self.max_head) if size > self.max_head else None


def _too_large(max_head: int) -> str:
    return (
        f"the request line and headers are larger than {max_head // 1024} KiB "
        "(STACKLAB_MAX_HEADER_KB)"
    )


class EdgeProtocol(H11Protocol):
    """uvicorn's H11Protocol with STACKLAB_MAX_HEADER_KB and STACKLAB_MAX_HEADERS; a
    request over either gets 431 and the connection is closed."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = get_settings()
        self.conn = _Connection(
            max_head=settings.max_header_kb * 1024, max_headers=settings.max_headers
        )

    def send_400_response(self, msg: str) -> None:
        error = self.conn.error if isinstance(self.conn, _Connection) else None
        status = error.error_status_hint if error is not None else 400
        if status != 431:
            super().send_400_response(msg)
            return
        if isinstance(error, _Refused):
            detail = str(error)
        else:  # h11's own: an incomplete head past max_incomplete_event_size
            detail = _too_large(self.conn.max_head if isinstance(self.conn, _Connection) else 0)
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        events = [
            h11.Response(status_code=431, headers=headers, reason=STATUS_PHRASES[431]),
            h11.Data(data=detail.encode()),
            h11.EndOfMessage(),
        ]
        self.transport.write(b"".join(self.conn.send(event) or b"" for event in events))
        self.transport.close()
