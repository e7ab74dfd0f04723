"""Driving the app as a server does, counting an answer's body instead of keeping it, and
measuring what a piece of work allocates (tests of bounded answers)."""

from __future__ import annotations

import gc
import threading
import tracemalloc

import anyio

from tests.stack import run_async


class Download:
    """One GET through the whole ASGI app: status, headers and bytes of the body, which is
    counted and dropped. `hold` (an event) keeps it from reading past the first piece until
    set; `leave`: the client disconnects once the first piece arrived; `started` is set
    when the first piece arrived."""

    def __init__(
        self,
        app,
        path: str,
        query: str = "",
        hold: threading.Event | None = None,
        leave: bool = False,
    ):
        self.app, self.path, self.query, self.hold, self.leave = app, path, query, hold, leave
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.size = 0
        self.head = b""
        self.started = threading.Event()
        self.done = threading.Event()

    async def run(self) -> None:
        finished, left = anyio.Event(), anyio.Event()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": self.query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        requested = False

        async def receive():
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            async with anyio.create_task_group() as group:

                async def wait_for(event: anyio.Event) -> None:
                    await event.wait()
                    group.cancel_scope.cancel()

                group.start_soon(wait_for, finished)
                group.start_soon(wait_for, left)
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                self.size += len(body)
                if len(self.head) < 4096:
                    self.head += body[: 4096 - len(self.head)]
                if body and not self.started.is_set():
                    self.started.set()
                    if self.leave:
                        left.set()
                    if self.hold is not None:
                        await anyio.to_thread.run_sync(self.hold.wait)
                if not message.get("more_body", False):
                    finished.set()

        try:
            await self.app(scope, receive, send)
        finally:
            finished.set()
            self.done.set()

    def __call__(self) -> Download:
        run_async(self.run)  # its own thread: the main one may hold Playwright's loop
        return self


def peak_of(work) -> int:
    """Peak bytes of Python allocations (every thread) while `work()` runs."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base
