"""The fault-injection proxy itself: forwards, refuses, stalls and recovers."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.chaos import TcpProxy


@pytest.fixture
def echo() -> Iterator[int]:
    """An echo server on a free port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy resets connections on purpose
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _roundtrip(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def _is_cut(conn: socket.socket) -> bool:
    try:
        conn.sendall(b"y")
        return conn.recv(1) == b""
    except OSError:
        return True


def _answers(port: int) -> bool:
    try:
        return _roundtrip(port, b"hello") == b"hello"
    except OSError:
        return False


def test_proxy_forwards_refuses_and_restores(echo):
    big = bytes(range(256)) * 4096  # 1 MiB: more than one socket buffer
    with TcpProxy("127.0.0.1", echo) as proxy:
        assert _roundtrip(proxy.url_port, big) == big
        open_conn = socket.create_connection(("127.0.0.1", proxy.url_port), timeout=2)
        open_conn.sendall(b"x")
        assert open_conn.recv(1) == b"x"
        proxy.refuse()
        assert _is_cut(open_conn)  # open connections are reset
        open_conn.close()
        assert not _answers(proxy.url_port)  # and new ones at once
        proxy.restore()
        assert _answers(proxy.url_port)


def test_proxy_stall_holds_bytes_until_resumed(echo):
    with TcpProxy("127.0.0.1", echo) as proxy:
        conn = socket.create_connection(("127.0.0.1", proxy.url_port), timeout=2)
        proxy.stall()
        conn.sendall(b"held")
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(4)
        proxy.resume()
        conn.settimeout(2)
        assert conn.recv(4) == b"held"
        conn.close()


def test_rewrite_keeps_user_path_and_query():
    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = proxy.rewrite("postgresql+psycopg://user:pw@db.example:5432/app?sslmode=disable")
        assert url == (
            f"postgresql+psycopg://user:pw@127.0.0.1:{proxy.url_port}/app?sslmode=disable"
        )
