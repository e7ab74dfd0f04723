"""The client's one HTTP connection: base URL, bearer token, timeouts, typed errors.

httpx underneath; a refusal becomes the matching `client.errors` type carrying the
server's message and fields, a connection that never answers `ServerUnreachable`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from client.errors import ServerUnreachable, StacklabError, api_error

TOKEN_VARIABLE = "STACKLAB_TOKEN"  # the server's own setting: one variable for both ends
DEFAULT_TIMEOUT = 30.0
CHUNK = 1 << 20

Query = Mapping[str, str | int | float | bool | None]


class Http:
    """JSON and files over one `httpx.Client` (pass `transport` to test without a socket)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get(self, path: str, params: Query | None = None) -> Any:
        """GET a JSON answer."""
        return self._send("GET", path, params=params).json()

    def post(self, path: str, body: object = None, params: Query | None = None) -> Any:
        """POST a JSON body (or none), return the JSON answer."""
        return self._send("POST", path, params=params, json=body).json()

    def text(self, path: str, params: Query | None = None) -> str:
        """GET a text answer (CSV, HTML)."""
        return self._send("GET", path, params=params).text

    def download(self, path: str, target: Path) -> Path:
        """Stream a file to `target` (written beside it, then renamed: whole or not at all),
        checked against the server's X-Checksum-SHA256 when it sends one."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        digest = hashlib.sha256()
        try:
            with self._http.stream("GET", path) as answer:
                _check(answer, read=True)
                with partial.open("wb") as out:
                    for chunk in answer.iter_bytes(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                expected = answer.headers.get("X-Checksum-SHA256")
        except httpx.TransportError as err:
            partial.unlink(missing_ok=True)
            raise ServerUnreachable(f"{self.url}{path}: {err}") from err
        if expected and expected != digest.hexdigest():
            partial.unlink(missing_ok=True)
            raise StacklabError(f"{path}: the download does not match its SHA-256")
        partial.replace(target)
        return target

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if "params" in kwargs and kwargs["params"] is not None:
            kwargs["params"] = {k: v for k, v in kwargs["params"].items() if v is not None}
        try:
            answer = self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise ServerUnreachable(f"{self.url}{path}: {err}") from err
        _check(answer)
        return answer


def _check(answer: httpx.Response, *, read: bool = False) -> None:
    """Raise the typed error for an error status (the body read first when streamed)."""
    if answer.status_code < 400:
        return
    if read:
        answer.read()
    try:
        body: object = answer.json()
    except ValueError:
        body = {"detail": answer.text[:500]}
    raise api_error(
        answer.status_code,
        body,
        url=str(answer.request.url),
        retry_after=answer.headers.get("Retry-After"),
    )
