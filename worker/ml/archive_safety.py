"""Reading uploaded archives and pickles defensively: safe names, size limits, no extraction."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from worker.ml.data import DataError

MAX_ARCHIVE_BYTES = 2 * 1024**3

# Errors the zip, tar, gzip and zlib readers raise on corrupt or truncated input.
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
)

Parts = tuple[str, ...]

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def member_parts(name: str, archive: Path) -> Parts:
    """Split an archive member name into path parts, refusing absolute or '..' paths."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise DataError(f"{archive}: unsafe path {name!r} in archive (absolute path)")
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if ".." in parts:
        raise DataError(f"{archive}: unsafe path {name!r} in archive ('..' component)")
    return parts


def is_ignored(parts: Parts) -> bool:
    """True for hidden files and macOS resource folders, which uploads often carry."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _over_limit(archive: Path, size: int, max_bytes: int) -> DataError:
    """The error for an archive whose uncompressed content exceeds max_bytes."""
    return DataError(
        f"{archive}: archive is too large: more than {max_bytes:,} bytes uncompressed "
        f"(at least {size:,})"
    )


def _read_bounded(fh: IO[bytes], budget: int, archive: Path, max_bytes: int) -> bytes:
    """Read a member but never more than the remaining budget, whatever its header claimed."""
    data = fh.read(budget + 1)
    if len(data) > budget:
        raise _over_limit(archive, max_bytes - budget + len(data), max_bytes)
    return data


@contextmanager
def _archive_errors(archive: Path, kind: str) -> Iterator[None]:
    """Turn low-level corrupt/truncated archive errors into a DataError naming the file."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{archive}: file not found") from exc
    except ARCHIVE_ERRORS as exc:
        raise DataError(f"{archive}: corrupt or truncated {kind} archive ({exc})") from exc


def read_zip_files(
    archive: Path, max_bytes: int = MAX_ARCHIVE_BYTES
) -> Iterator[tuple[Parts, bytes]]:
    """Yield (path parts, content) of each regular, non-hidden file in a zip, all in memory."""
    with _archive_errors(archive, "zip"), zipfile.ZipFile(archive) as zf:
        members = [(member_parts(i.filename, archive), i) for i in zf.infolist()]
        wanted = [(p, i) for p, i in members if not (i.is_dir() or is_ignored(p))]
        declared = sum(i.file_size for _, i in wanted)
        if declared > max_bytes:
            raise _over_limit(archive, declared, max_bytes)
        budget = max_bytes
        for parts, info in wanted:
            with zf.open(info) as fh:
                data = _read_bounded(fh, budget, archive, max_bytes)
            budget -= len(data)
            yield parts, data


def read_tar_files(
    archive: Path, wanted: Callable[[Parts], bool], max_bytes: int = MAX_ARCHIVE_BYTES
) -> dict[Parts, bytes]:
    """Read the wanted regular files of a (compressed) tar in one forward pass, in memory."""
    found: dict[Parts, bytes] = {}
    total = 0
    # Not stream mode ("r|*"): that reads a truncated gzip as a short archive without error.
    with _archive_errors(archive, "tar"), tarfile.open(archive, mode="r:*") as tf:
        for member in tf:
            parts = member_parts(member.name, archive)
            if member.isdir() or is_ignored(parts):
                continue
            if not member.isfile():
                raise DataError(f"{archive}: unsupported member {member.name!r} (link or device)")
            total += member.size
            if total > max_bytes:
                raise _over_limit(archive, total, max_bytes)
            if wanted(parts):
                fh = tf.extractfile(member)
                assert fh is not None  # isfile() members always have content
                found[parts] = _read_bounded(fh, member.size, archive, max_bytes)
        _drain(tf.fileobj, archive, max_bytes - total, max_bytes)
    return found


def _drain(fh: IO[bytes] | None, archive: Path, budget: int, max_bytes: int) -> None:
    """Read to the end so gzip/bz2/xz check their trailer: a truncated download then fails."""
    while fh is not None and (chunk := fh.read(1 << 20)):
        budget -= len(chunk)
        if budget < 0:  # padding is a few KB; gigabytes of trailing data are a bomb
            raise _over_limit(archive, max_bytes - budget, max_bytes)


def read_npz(
    path: Path, keys: tuple[str, ...], max_bytes: int = MAX_ARCHIVE_BYTES
) -> dict[str, np.ndarray]:
    """Read the named arrays of an .npz that exist, checking declared sizes before allocating."""
    arrays: dict[str, np.ndarray] = {}
    budget = max_bytes
    with _archive_errors(path, "npz (zip)"), zipfile.ZipFile(path) as zf:
        members = set(zf.namelist())
        for key in keys:
            if f"{key}.npy" not in members:
                continue
            with zf.open(f"{key}.npy") as fh:
                shape, dtype = _npy_header(fh, path, key)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if nbytes > budget:
                raise _over_limit(path, max_bytes - budget + nbytes, max_bytes)
            budget -= nbytes
            with zf.open(f"{key}.npy") as fh:
                arrays[key] = _read_npy(fh, path, key)
    return arrays


def _npy_header(fh: IO[bytes], path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an .npy header, refusing object arrays (they need pickle)."""
    try:
        version = np.lib.format.read_magic(fh)
        if version not in _HEADER_READERS:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = _HEADER_READERS[version](fh)
    except ValueError as exc:
        raise DataError(f"{path}: {key} is not a valid .npy array ({exc})") from exc
    if dtype.hasobject:
        raise DataError(f"{path}: {key} holds Python objects (dtype {dtype}); refused for safety")
    return shape, dtype


def _read_npy(fh: IO[bytes], path: Path, key: str) -> np.ndarray:
    """Read one .npy member with pickles disabled."""
    try:
        return np.lib.format.read_array(fh, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: cannot read {key}: {exc}") from exc


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """How Python 3 pickles bytes at protocols < 3; other codecs (zlib, ...) are refused."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused codec {encoding!r} in _codecs.encode")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Globals a CIFAR batch pickle may name: numpy array and dtype reconstruction only."""
    reconstruct = np.ndarray((0,), np.uint8).__reduce__()[0]
    frombuffer = np.arange(2).__reduce_ex__(5)[0]
    scalar = np.uint8(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Python 2 era pickles say numpy.core, NumPy 2 says numpy._core; accept both spellings.
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only whitelisted numpy globals: uploads are untrusted."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a whitelisted global or refuse."""
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name} (only numpy arrays and plain data are allowed)"
            ) from None


def safe_unpickle(data: bytes, label: str) -> Any:
    """Unpickle with encoding="bytes" (as the official CIFAR batches need), running no code."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{label}: unsafe or invalid pickle: {exc}") from exc
    except (EOFError, ValueError, TypeError, LookupError, AttributeError, MemoryError) as exc:
        raise DataError(f"{label}: not a valid pickle ({type(exc).__name__}: {exc})") from exc
