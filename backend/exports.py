"""Answers of any size: streamed in bounded memory, at most a few at once.

An export (the runs table as CSV, a run's metrics as CSV, the experiment report) is written
piece by piece while it is sent: what the web holds is one batch of rows, whatever the
export's length. Each takes a slot of a process-wide count (`max_concurrent_exports`,
STACKLAB_MAX_CONCURRENT_EXPORTS); one past the cap is answered 503 with Retry-After at once,
never queued. A slot is given back when its stream ends, fails, or the client goes away.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from store.settings import get_settings

RETRY_AFTER_SECONDS = 10
BUSY = (
    "{busy} exports are being written already, the most this server writes at once "
    "(max_concurrent_exports, setting STACKLAB_MAX_CONCURRENT_EXPORTS); try again in a moment."
)


class Slots:
    """A process-wide count of exports in progress, taken without waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.busy = 0

    def take(self) -> Slot:
        """A slot, or HTTPException 503 when max_concurrent_exports are being written."""
        limit = get_settings().max_concurrent_exports
        with self._lock:
            if self.busy >= limit:
                raise HTTPException(
                    503, BUSY.format(busy=self.busy), {"Retry-After": str(RETRY_AFTER_SECONDS)}
                )
            self.busy += 1
        return Slot(self)

    def _give_back(self) -> None:
        with self._lock:
            self.busy -= 1


class Slot:
    """One export's place; release() is idempotent."""

    def __init__(self, slots: Slots) -> None:
        self._slots: Slots | None = slots
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            slots, self._slots = self._slots, None
        if slots is not None:
            slots._give_back()


SLOTS = Slots()


def answers(media_type: str) -> dict[int | str, dict[str, Any]]:
    """What an export route declares in the OpenAPI schema: its body's type, and the 503."""
    return {
        200: {"description": "The export, streamed", "content": {media_type: {"schema": {}}}},
        503: {"description": "max_concurrent_exports are being written: retry after a moment"},
    }


class _Export(StreamingResponse):
    """A streamed answer that gives its slot back however the sending ends."""

    def __init__(self, chunks: Iterator[str], slot: Slot, **kwargs: Any) -> None:
        super().__init__(chunks, **kwargs)
        self._chunks, self._slot = chunks, slot
        weakref.finalize(self, slot.release)  # a response dropped before it was sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # done, failed, or the client went away (the sending was cancelled)
            close = getattr(self._chunks, "close", None)
            if close is not None:
                with contextlib.suppress(ValueError):  # still running in a thread: GC closes it
                    close()
            self._slot.release()


def stream(
    chunks: Iterator[str], *, media_type: str, headers: dict[str, str], slot: Slot
) -> StreamingResponse:
    """A response sending `chunks` as they are made (each made in the thread pool), holding
    `slot` until the sending ends: done, failed, or the client went away."""
    return _Export(chunks, slot, media_type=media_type, headers=headers)


def take() -> Slot:
    """A slot for an export about to start: HTTPException 503 over the cap. Take it after
    the request is checked (a 404 or 422 holds no slot) and hand it to stream() at once."""
    return SLOTS.take()


# --- Names of downloads: one rule for every file the web sends ---

MAX_NAME_CHARS = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def download_name(stem: str, *, run_id: int | None = None, run_kind: str | None = None) -> str:
    """The file name a download is saved as: a run's files carry its id and kind
    (`run-12-finetune-classifier.keras`), so two runs' files never collide in a downloads
    folder; ASCII letters, digits, dots, dashes and underscores only, at most
    MAX_NAME_CHARS (the extension kept)."""
    prefix = f"run-{run_id}-" if run_id is not None else ""
    if run_id is not None and run_kind:
        prefix += f"{_slug(run_kind)}-"
    name = _slug(stem) or "download"
    room = MAX_NAME_CHARS - len(prefix)
    if len(name) > room:
        base, dot, extension = name.rpartition(".")
        keep = f".{extension}" if dot and len(extension) <= 10 else ""
        name = name[: room - len(keep)].rstrip("-.") + keep
    return prefix + name


def _slug(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.")


def attachment(name: str) -> dict[str, str]:
    """The Content-Disposition header of a download saved as `name` (download_name's)."""
    return {"Content-Disposition": f'attachment; filename="{download_name(name)}"'}
