"""Reading uploaded archives defensively: safe names, counted sizes and members, no extraction."""

from __future__ import annotations

import math
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, NoReturn, Protocol

import numpy as np

from jobspec import text
from worker.ml.datasets import stdlib_internals, zip_safety
from worker.ml.datasets.dataset import IMAGE_SHAPE, DataError, reason
from worker.ml.datasets.limits import DEFAULT_LIMITS, ImportLimits, named

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "check_class_count",
    "check_output",
    "read_npz",
    "read_npz_headers",
    "read_tar_files",
    "read_zip_files",
]

MAX_ARCHIVE_BYTES = DEFAULT_LIMITS.max_bytes
# What one decoded image costs in a data set: its uint8 pixels and an int64 label.
IMAGE_BYTES = math.prod(IMAGE_SHAPE) + 8
CHUNK = zip_safety.CHUNK

# Errors the zip, tar, gzip and zlib readers raise on corrupt or truncated input.
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
)

Parts = tuple[str, ...]
# String arrays an .npz may carry that the store keeps: dimensions, and each string's rule.
# (A saved file's "name" is the upload's file name at most: the store names data sets.)
TEXT_ARRAYS = {
    "class_names": (1, text.CLASS_NAME),
    "source": (0, text.Rule("source", max_chars=40, min_chars=1)),
}

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


def check_class_count(label: str, n_classes: int, limits: ImportLimits) -> None:
    """Refuse more classes than max_classes, before anything per class is allocated."""
    if n_classes > limits.max_classes:
        raise DataError(
            f"{label}: {n_classes:,} classes, more than the {limits.max_classes:,} allowed "
            f"({named('max_classes')})"
        )


def check_class_names(label: str, names: Sequence[str], limits: ImportLimits) -> tuple[str, ...]:
    """Class names read from a file, each valid text of at most 100 characters and all of
    them together at most MAX_CLASS_SUMMARY_CHARS: every page listing data sets shows them."""
    check_class_count(label, len(names), limits)  # callers count first, before decoding
    checked = tuple(check_class_name(f"{label} (class {i})", n) for i, n in enumerate(names))
    total = sum(len(name) for name in checked)
    if total > text.MAX_CLASS_SUMMARY_CHARS:
        raise DataError(
            f"{label}: the class names add up to {total:,} characters, more than the "
            f"{text.MAX_CLASS_SUMMARY_CHARS:,} allowed"
        )
    return checked


def check_class_name(label: str, name: str) -> str:
    """One class name read from a file, normalised, or a DataError naming where and why
    (never the bad character itself: a tar name may carry a lone surrogate)."""
    try:
        return text.check(name, text.CLASS_NAME)
    except text.TextError as exc:
        raise DataError(f"{label}: {exc}") from None


def check_output(label: str, images: int, nbytes: int, limits: ImportLimits) -> None:
    """Refuse a data set that decodes to more images or bytes than its budgets allow,
    before those are allocated (counted from headers, or as images decode)."""
    if images > limits.max_images:
        raise DataError(
            f"{label}: {images:,} images, more than the {limits.max_images:,} allowed "
            f"({named('max_images')})"
        )
    if nbytes > limits.max_decoded_bytes:
        raise DataError(
            f"{label}: decodes to {nbytes:,} bytes of arrays, more than the "
            f"{limits.max_decoded_bytes:,} allowed ({named('max_decoded_bytes')})"
        )


def _read_exactly(fh: IO[bytes], size: int, name: str) -> bytes:
    """Read a member of known size a chunk at a time: no single read of a huge budget."""
    chunks, left = [], size
    while left > 0:
        chunk = fh.read(min(CHUNK, left))
        if not chunk:
            raise EOFError(f"{name!r} is truncated")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


@contextmanager
def _archive_errors(archive: Path, kind: str) -> Iterator[None]:
    """Turn low-level corrupt/truncated archive errors into a DataError naming the file."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{archive}: file not found") from exc
    except UnicodeDecodeError as exc:  # a zip entry flagged UTF-8 whose name is not
        raise DataError(f"{archive}: a member name of the {kind} archive is not UTF-8") from exc
    except ARCHIVE_ERRORS as exc:
        raise DataError(f"{archive}: corrupt or truncated {kind} archive ({reason(exc)})") from exc


@contextmanager
def _checked_zip(
    archive: Path, limits: ImportLimits, kind: str
) -> Iterator[tuple[IO[bytes], zipfile.ZipFile, dict[zipfile.ZipInfo, int]]]:
    """Open a zip whose directory, member count, entry layout and declared sizes are in budget."""
    with _archive_errors(archive, kind), open(archive, "rb") as fh:
        zip_safety.check_central_directory(fh, archive, limits)
        with zipfile.ZipFile(fh) as zf:
            offsets = zip_safety.data_offsets(fh, zf, archive)
            declared = sum(i.file_size for i in offsets)
            if declared > limits.max_bytes:
                raise _over_limit(archive, declared, limits.max_bytes)
            yield fh, zf, offsets


def read_zip_files(
    archive: Path, limits: ImportLimits = DEFAULT_LIMITS
) -> Iterator[tuple[Parts, bytes]]:
    """Yield (path parts, content) of each regular, non-hidden file in a zip, one at a time."""
    with _checked_zip(archive, limits, "zip") as (fh, zf, offsets):
        members = [(member_parts(i.filename, archive), i) for i in zf.infolist()]
        for parts, info in members:
            if not (info.is_dir() or is_ignored(parts)):
                yield parts, zip_safety.read_member(fh, info, offsets[info], archive)


def count_zip_files(archive: Path, limits: ImportLimits = DEFAULT_LIMITS) -> int:
    """How many files read_zip_files(archive) will yield (the central directory says)."""
    with _checked_zip(archive, limits, "zip") as (_, zf, _):
        return sum(
            1
            for info in zf.infolist()
            if not (info.is_dir() or is_ignored(member_parts(info.filename, archive)))
        )


def _bounded_tarinfo(archive: Path, limits: ImportLimits) -> type[tarfile.TarInfo]:
    """A TarInfo that counts header bytes, checking each before tarfile reads its content."""
    seen = [0]

    def count_header(info: tarfile.TarInfo) -> None:
        seen[0] += stdlib_internals.tar_header_bytes(info)
        if seen[0] > limits.max_header_bytes:
            raise DataError(
                f"{archive}: tar headers take more than {limits.max_header_bytes:,} bytes "
                "(max_header_bytes)"
            )

    def refuse_sparse(info: tarfile.TarInfo) -> NoReturn:
        raise DataError(f"{archive}: sparse member {info.name!r} is not supported")

    return stdlib_internals.hooked_tarinfo(count_header, refuse_sparse)


def read_tar_files(
    archive: Path,
    wanted: Callable[[Parts], bool],
    limits: ImportLimits = DEFAULT_LIMITS,
    max_wanted_bytes: int | None = None,
) -> dict[Parts, bytes]:
    """Read the wanted regular files of a (compressed) tar in one forward pass, in memory;
    those together may take max_wanted_bytes (an output budget's share) at most."""
    found: dict[Parts, bytes] = {}
    total = kept = 0
    tarinfo = _bounded_tarinfo(archive, limits)
    # Not stream mode ("r|*"): that reads a truncated gzip as a short archive without error.
    with _archive_errors(archive, "tar"), tarfile.open(archive, "r:*", tarinfo=tarinfo) as tf:
        for count, member in enumerate(tf, 1):
            if count > limits.max_members:  # checked as we go: no list of every member first
                raise DataError(
                    f"{archive}: archive has more than {limits.max_members:,} members (max_members)"
                )
            parts = member_parts(member.name, archive)
            if member.isdir() or is_ignored(parts):
                continue
            if not member.isfile():
                raise DataError(f"{archive}: unsupported member {member.name!r} (link or device)")
            total += member.size
            if total > limits.max_bytes:
                raise _over_limit(archive, total, limits.max_bytes)
            if wanted(parts):
                kept += member.size
                if max_wanted_bytes is not None and kept > max_wanted_bytes:
                    raise DataError(
                        f"{archive}: the data files take more than {max_wanted_bytes:,} bytes, "
                        f"more than what decodes within the {limits.max_decoded_bytes:,} "
                        f"bytes allowed ({named('max_decoded_bytes')})"
                    )
                fh = tf.extractfile(member)
                assert fh is not None  # isfile() members always have content
                found[parts] = _read_exactly(fh, member.size, member.name)
        _drain(tf.fileobj, archive, limits.max_bytes - total, limits.max_bytes)
    return found


class _Reader(Protocol):
    """What _drain reads: a file object (tarfile's underlying one included)."""

    def read(self, size: int, /) -> bytes: ...


def _drain(fh: _Reader | None, archive: Path, budget: int, max_bytes: int) -> None:
    """Read to the end so gzip/bz2/xz check their trailer: a truncated download then fails."""
    while fh is not None and (chunk := fh.read(CHUNK)):
        budget -= len(chunk)
        if budget < 0:  # padding is a few KB; gigabytes of trailing data are a bomb
            raise _over_limit(archive, max_bytes - budget, max_bytes)


def read_npz(
    path: Path,
    keys: tuple[str, ...],
    limits: ImportLimits = DEFAULT_LIMITS,
    *,
    check_text: bool = True,
) -> dict[str, np.ndarray]:
    """Read the named arrays of an .npz that exist, checking every declared shape against
    the member sizes and the output budgets before allocating any of them (and the string
    arrays' widths, unless check_text is False: our own files, read back for training)."""
    arrays: dict[str, np.ndarray] = {}
    with _checked_zip(path, limits, "npz (zip)") as (_, zf, _):
        for key, info in _npz_members(path, zf, keys, limits, check_text):
            # read_array fills the declared shape in 16 MiB reads; a member that inflates
            # to more than that is never read past it.
            with zf.open(info) as fh:
                arrays[key] = _read_npy(fh, path, key)
    return arrays


def read_npz_headers(
    path: Path, keys: tuple[str, ...], limits: ImportLimits = DEFAULT_LIMITS
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of the named arrays of an .npz that exist, read from their headers
    only (the same checks as read_npz, without reading any array)."""
    with _checked_zip(path, limits, "npz (zip)") as (_, zf, _):
        return {
            key: _npz_header(path, zf, key, info)
            for key, info in _npz_members(path, zf, keys, limits, True)
        }


def _npz_members(
    path: Path,
    zf: zipfile.ZipFile,
    keys: tuple[str, ...],
    limits: ImportLimits,
    check_text: bool,
) -> list[tuple[str, zipfile.ZipInfo]]:
    """The members holding the named arrays, after checking what all their headers declare
    against their sizes and the output budgets (images, decoded bytes)."""
    infos = {i.filename: i for i in zf.infolist()}
    present = [(key, infos[f"{key}.npy"]) for key in keys if f"{key}.npy" in infos]
    images = total = 0
    for key, info in present:
        shape, dtype = _npz_header(path, zf, key, info)
        if key.startswith("x_"):
            if dtype != np.uint8:  # refused before gigabytes of floats are read
                raise DataError(
                    f"{path}: {key} has dtype {dtype}; expected uint8 pixels 0-255 "
                    "(convert floats in [0, 1] with (x * 255).round().astype('uint8'))"
                )
            images += shape[0] if shape else 0
        elif check_text and key in TEXT_ARRAYS:
            _check_text_header(path, key, shape, dtype)
        total += math.prod(shape) * dtype.itemsize
        check_output(f"{path}: {key}", images, total, limits)
    return present


def _check_text_header(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Class names (1-D) and a saved name or source (0-D) are short strings: refused from
    the header when they are not, before 240 MB of 60,000-character names are read."""
    ndim, rule = TEXT_ARRAYS[key]
    if len(shape) != ndim or dtype.kind not in "US":
        want = "a 1-D array of strings" if ndim else "a single string"
        raise DataError(f"{path}: {key} must be {want}, got {dtype} of shape {shape}")
    # A str array stores 4 bytes a character, a bytes array up to 4 bytes a UTF-8 character.
    width = dtype.itemsize // 4 if dtype.kind == "U" else dtype.itemsize
    limit = rule.max_chars if dtype.kind == "U" else 4 * rule.max_chars
    if width > limit:
        raise DataError(
            f"{path}: {key} holds strings of up to {width:,} characters; "
            f"a {rule.what} may have {rule.max_chars:,}"
        )


def _npz_header(
    path: Path, zf: zipfile.ZipFile, key: str, info: zipfile.ZipInfo
) -> tuple[tuple[int, ...], np.dtype]:
    """One member's declared shape and dtype, refusing more data than the member holds."""
    with zf.open(info) as fh:
        shape, dtype = _npy_header(fh, path, key)
    # Python ints: np.prod of a hostile shape can overflow int64 to a small number.
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise DataError(
            f"{path}: {key} declares {nbytes:,} bytes of data in a {info.file_size:,}-byte member"
        )
    return shape, dtype


def _npy_header(fh: IO[bytes], path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an .npy header, refusing object arrays (they need pickle)."""
    try:
        version = np.lib.format.read_magic(fh)
        if version not in _HEADER_READERS:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = _HEADER_READERS[version](fh)
    except ValueError as exc:
        raise DataError(f"{path}: {key} is not a valid .npy array ({reason(exc)})") from exc
    if dtype.hasobject:
        raise DataError(f"{path}: {key} holds Python objects (dtype {dtype}); refused for safety")
    return shape, dtype


def _read_npy(fh: IO[bytes], path: Path, key: str) -> np.ndarray:
    """Read one .npy member with pickles disabled."""
    try:
        return np.lib.format.read_array(fh, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: cannot read {key} ({reason(exc)})") from exc
