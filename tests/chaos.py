"""Fault injection for tests: a TCP proxy that can refuse or stall a real service on demand.

    with TcpProxy("127.0.0.1", 6379) as proxy:
        env["REDIS_URL"] = proxy.rewrite("redis://127.0.0.1:6379/0")
        proxy.refuse()   # open connections are reset, new ones are reset at once
        proxy.restore()  # forwarding again
        proxy.stall()    # connections stay open but no byte moves: a hung service
        proxy.resume()

One accept thread plus two pump threads per connection; standard library only.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

FORWARD, REFUSE, STALL = "forward", "refuse", "stall"
_POLL = 0.05  # how often a blocked thread looks at the mode and the stop flag


def _reset(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN, as a crashed or firewalled service would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket):
        self.client, self.upstream = client, upstream
        self.closed = threading.Event()

    def close(self, *, reset: bool = True) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
            else:
                sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<url_port> to target_host:target_port until told otherwise."""

    def __init__(self, target_host: str, target_port: int, *, connect_timeout: float = 5.0):
        self.target = (target_host, target_port)
        self.connect_timeout = connect_timeout
        self._mode = FORWARD
        self._flowing = threading.Event()
        self._flowing.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.url_port: int = self._listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    @classmethod
    def for_url(cls, url: str, default_port: int) -> TcpProxy:
        """A proxy to the host and port a service URL names."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or default_port)

    def rewrite(self, url: str) -> str:
        """The same URL (user, password, path, query kept) pointing at the proxy."""
        parts = urlsplit(url)
        auth, _, _ = parts.netloc.rpartition("@")
        netloc = f"{auth}@" if auth else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.url_port}"))

    # --- life ---------------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._accepter.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._flowing.set()
        self._accepter.join(timeout=2)
        self._listener.close()
        self._drop_all()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- faults -------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        with self._lock:
            return len(self._pairs)

    def refuse(self) -> None:
        """Reset every open connection, and every new one as soon as it arrives."""
        self._mode = REFUSE
        self._flowing.set()  # stalled pumps wake up and find their sockets gone
        self._drop_all()

    def restore(self) -> None:
        """Forward again (after refuse() or stall())."""
        self._mode = FORWARD
        self._flowing.set()

    def stall(self) -> None:
        """Keep connections open, accept new ones, but move no bytes: a hung service."""
        self._mode = STALL
        self._flowing.clear()

    def resume(self) -> None:
        """Deliver what was held and forward again."""
        self.restore()

    # --- plumbing -----------------------------------------------------------------------------
    def _drop_all(self) -> None:
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            pair.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._mode == REFUSE:
                _reset(client)
                continue
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
        except OSError:
            _reset(client)
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, upstream)
        with self._lock:
            if self._mode == REFUSE or self._stop.is_set():
                pair.close()
                return
            self._pairs.add(pair)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        ended = False  # one side hung up: close the other politely, not with a reset
        try:
            while not pair.closed.is_set():
                if not self._flowing.wait(_POLL):
                    continue  # stalled: leave the bytes in the kernel's buffers
                if not select.select([src], [], [], _POLL)[0]:
                    continue
                data = src.recv(65536)
                if not data:
                    ended = True
                    break
                self._send(pair, dst, data)
        except (OSError, ValueError):  # reset, or closed under us by refuse()
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            pair.close(reset=not ended)

    def _send(self, pair: _Pair, dst: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if pair.closed.is_set():
                raise OSError("closed")
            if not self._flowing.is_set() or not select.select([], [dst], [], _POLL)[1]:
                self._flowing.wait(_POLL)  # stalled mid-transfer: hold what was read
                continue
            view = view[dst.send(view) :]
