"""One `stacklab serve` per data directory and per port.

The data directory is claimed with a lock file holding the pid (`serve.lock`), locked with
flock: the kernel drops the lock when its process dies however it dies, so a serve killed
with kill -9 leaves a file that blocks nobody. The port is tried by binding it the way
uvicorn does, before anything starts, and again whenever the web app exits, so a port
someone else took ends `serve` with a message instead of restarting the web forever.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from cli.errors import CliError

LOCK_NAME = "serve.lock"


@contextlib.contextmanager
def data_dir_claimed(data_dir: Path) -> Iterator[Path]:
    """Hold the data directory's lock while the block runs; CliError naming the directory
    and the holder's pid when another serve holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir.resolve() / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the children
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(_held_message(data_dir.resolve(), _read_pid(fd))) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a taker)


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _held_message(data_dir: Path, pid: int | None) -> str:
    holder = f"pid {pid}" if pid is not None else "a process that has not written its pid yet"
    return (
        f"the data directory {data_dir} is in use by another stacklab serve ({holder}, "
        f"{LOCK_NAME}); stop it first, or give this one another STACKLAB_DATA_DIR"
    )


def port_problem(host: str, port: int) -> str | None:
    """Why the web app could not listen on host:port now (None: it could), found by
    binding it with uvicorn's options."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            return f"port {port} on {host or '*'} is already in use (another stacklab serve?)"
        return f"cannot listen on {host}:{port}: {err.strerror or err}"
    return None


def check_port(host: str, port: int) -> None:
    """CliError naming the port when the web app could not listen on it."""
    problem = port_problem(host, port)
    if problem:
        raise CliError(f"{problem}; stop what holds it or choose another --port")
