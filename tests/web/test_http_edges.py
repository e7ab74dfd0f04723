"""The server's edges on a real uvicorn started as `serve` starts it (cli/processes.py):
header size and count (431), no quadratic header parsing, forwarded headers believed only
from STACKLAB_TRUSTED_PROXIES, and the sign-in throttle keyed on the real peer."""

from __future__ import annotations

import os
import socket
import threading
import uuid

import httpx
import pytest

from tests.stack import scaled, start_web

TOKEN = "edge-token-123"
WRONG = {"Authorization": "Bearer not-the-token"}


def _env(tmp_path_factory, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "STACKLAB_DATA_DIR": str(tmp_path_factory.mktemp("edges")),
        "STACKLAB_QUEUE": f"edges-{uuid.uuid4().hex[:8]}",
        "STACKLAB_TOKEN": TOKEN,
        "STACKLAB_LOGIN_FAILURES_PER_MINUTE": "5",
        **extra,
    }


@pytest.fixture(scope="module")
def web(tmp_path_factory, request):
    """The web as serve starts it: no trusted proxies, default limits."""
    env = _env(tmp_path_factory)
    env.pop("STACKLAB_TRUSTED_PROXIES", None)
    with start_web(env, log=tmp_path_factory.mktemp("edges-log") / "web.log") as running:
        yield running


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory):
    """The web told that loopback is its reverse proxy."""
    env = _env(tmp_path_factory, STACKLAB_TRUSTED_PROXIES="127.0.0.1")
    with start_web(env, log=tmp_path_factory.mktemp("proxy-log") / "web.log") as running:
        yield running


def _address(web) -> tuple[str, int]:
    host, port = web.url.removeprefix("http://").split(":")
    return host, int(port)


def _raw(web, head: bytes) -> bytes:
    """Send a request head as it is; what came back before the server closed."""
    with socket.create_connection(_address(web), timeout=scaled(30)) as sock:
        sock.sendall(head)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
            if b"\r\n\r\n" in reply and b"connection: close" not in reply.lower():
                break  # a keep-alive answer: its head is enough
        return reply


def test_a_40_mb_header_is_refused_with_431_while_others_are_served(web):
    size = 40 << 20
    outcome: dict[str, object] = {}
    done = threading.Event()

    def flood() -> None:
        sock = socket.create_connection(_address(web), timeout=scaled(60))
        sent = 0
        try:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            piece = b"a" * 4096  # small pieces: what made httptools' joining quadratic
            while sent < size:
                sock.sendall(piece)
                sent += len(piece)
            sock.sendall(b"\r\n\r\n")
        except OSError as err:  # the server closed on us: refused before we were done
            outcome["error"] = err
        outcome["sent"] = sent
        try:
            outcome["reply"] = sock.recv(4096)
        except OSError:
            outcome["reply"] = b""
        sock.close()
        done.set()

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    # Another connection is answered while (or after) the flood goes on.
    assert httpx.get(f"{web.url}/api/health", timeout=scaled(30)).status_code == 200
    assert done.wait(scaled(120)), "the flood never ended"
    reply = outcome["reply"]
    assert isinstance(reply, bytes)
    refused_early = "error" in outcome and outcome["sent"] < size
    assert reply.startswith(b"HTTP/1.1 431") or refused_early, outcome
    if reply:
        assert reply.startswith(b"HTTP/1.1 431") and b"STACKLAB_MAX_HEADER_KB" in reply
    assert httpx.get(f"{web.url}/api/health", timeout=scaled(30)).status_code == 200


def test_header_size_limit_answers_431_naming_the_setting(web):
    def head(size: int) -> bytes:
        return b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: %s\r\n\r\n" % (b"p" * size)

    assert _raw(web, head(32 * 1024)).startswith(b"HTTP/1.1 200")
    refused = _raw(web, head(80 * 1024))
    assert refused.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert b"64 KiB (STACKLAB_MAX_HEADER_KB)" in refused
    # The request line counts too.
    long_line = b"GET /api/health?q=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (b"q" * 80 * 1024)
    assert _raw(web, long_line).startswith(b"HTTP/1.1 431")


def test_header_count_limit_answers_431_naming_the_setting(web):
    def head(count: int) -> bytes:
        fields = b"".join(b"X-F%d: v\r\n" % i for i in range(count))
        return b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + b"\r\n"

    assert _raw(web, head(90)).startswith(b"HTTP/1.1 200")
    refused = _raw(web, head(150))
    assert refused.startswith(b"HTTP/1.1 431")
    assert b"more than 100 header fields (STACKLAB_MAX_HEADERS)" in refused


def test_a_huge_content_length_is_a_400_not_a_crash(web):
    head = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %s\r\n\r\n" % (b"9" * 5000)
    assert _raw(web, head).startswith(b"HTTP/1.1 4")
    assert httpx.get(f"{web.url}/api/health", timeout=scaled(30)).status_code == 200


def test_forwarded_for_from_loopback_is_not_believed_by_default(web):
    """Rotating X-Forwarded-For on wrong tokens: throttled all the same (the real peer)."""
    limit = 5
    answers = [
        httpx.get(
            f"{web.url}/api/runs",
            headers={**WRONG, "X-Forwarded-For": f"203.0.113.{i}"},
            timeout=scaled(30),
        ).status_code
        for i in range(limit + 3)
    ]
    assert answers[:limit] == [401] * limit and set(answers[limit:]) == {429}, answers
    forms = [
        httpx.post(
            f"{web.url}/login",
            data={"token": "wrong", "next": "/runs"},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
            timeout=scaled(30),
        ).status_code
        for i in range(2)
    ]
    assert forms == [429, 429]


def test_forwarded_for_is_believed_from_a_configured_proxy(behind_proxy):
    """With STACKLAB_TRUSTED_PROXIES naming loopback, each forwarded client is its own."""
    limit = 5
    for i in range(limit + 3):
        address = f"203.0.113.{i}"
        answer = httpx.get(
            f"{behind_proxy.url}/api/runs",
            headers={**WRONG, "X-Forwarded-For": address},
            timeout=scaled(30),
        )
        assert answer.status_code == 401, (address, answer.status_code)
    same = {**WRONG, "X-Forwarded-For": "198.51.100.7"}
    answers = [
        httpx.get(f"{behind_proxy.url}/api/runs", headers=same, timeout=scaled(30)).status_code
        for _ in range(limit + 1)
    ]
    assert answers == [401] * limit + [429]
