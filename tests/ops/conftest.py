"""Fixtures of the ops tests: a migrated store on SQLite and PostgreSQL, and a local
webhook receiver (a tiny HTTP server thread) that answers what a test scripts."""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.stack import create_pg_database, stack_env


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request, tmp_path_factory):
    """A migrated database and a registered tiny data set; yields the data set's id."""
    env = {"STACKLAB_DATA_DIR": str(tmp_path_factory.mktemp(f"ops-{request.param}"))}
    drop = None
    if request.param == "postgres":
        env["DATABASE_URL"], drop = create_pg_database()
    with stack_env(env):
        from store.db import upgrade_schema
        from worker.datasets import register
        from worker.ml.datasets.demo import make_demo

        upgrade_schema()
        yield register(make_demo(seed=1, n_train=40, n_test=10), name="demo-ops")
    if drop:
        drop()


@dataclass
class Received:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers `statuses` in turn (then 200)."""

    url: str
    statuses: list[int] = field(default_factory=list)
    got: queue.Queue[Received] = field(default_factory=queue.Queue)

    def next(self, timeout: float = 30.0) -> Received:
        return self.got.get(timeout=timeout)

    def count(self) -> int:
        return self.got.qsize()


@pytest.fixture
def receiver():
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            me = box["r"]
            status = me.statuses.pop(0) if me.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            me.got.put(Received(self.path, dict(self.headers.items()), body))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box["r"]
    server.shutdown()
    server.server_close()
