"""One webhook POST over the standard library: a timeout on every socket operation, no
redirects followed (a 3xx is a failure, so a signed body never goes where it was not
configured to), and at most a few KiB of the answer read."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import IO

ANSWER_BYTES = 4096  # of the receiver's answer, read and thrown away
ERROR_CHARS = 300


@dataclass(frozen=True)
class Answer:
    """How one POST went: the receiver's HTTP status (None: no answer) and why it failed."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The receiver took it (2xx)."""
        return self.status is not None and 200 <= self.status < 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None  # urllib then raises HTTPError with the 3xx


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Answer:
    """POST `body` to `url`; never raises for a network or HTTP failure."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(ANSWER_BYTES)
            return Answer(response.status)
    except urllib.error.HTTPError as err:
        return Answer(err.code, f"HTTP {err.code} {err.reason}"[:ERROR_CHARS])
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        return Answer(None, f"{type(err).__name__}: {reason}"[:ERROR_CHARS])
