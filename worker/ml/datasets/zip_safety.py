"""Zip files from strangers: bounded central directory, no overlapping entries, counted inflate."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO

from worker.ml.datasets import stdlib_internals
from worker.ml.datasets.dataset import DataError
from worker.ml.datasets.limits import ImportLimits

CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes, then name and extra field
_CENTRAL_HEADER_SIZE = 46
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def check_central_directory(fh: IO[bytes], archive: Path, limits: ImportLimits) -> None:
    """Refuse a central directory over max_header_bytes or max_members before zipfile parses it."""
    # zipfile's own end-record reader, so both agree on where the directory is.
    directory_at = stdlib_internals.zip_central_directory(fh)
    if directory_at is None:
        raise zipfile.BadZipFile("File is not a zip file")
    size, entries = directory_at.size, directory_at.entries
    if size > limits.max_header_bytes:
        raise DataError(
            f"{archive}: central directory is {size:,} bytes, more than "
            f"{limits.max_header_bytes:,} bytes (max_header_bytes)"
        )
    _check_count(archive, entries, limits)
    fh.seek(directory_at.start)
    directory = fh.read(size)
    # The end record's count can lie; zipfile builds one object per entry it finds, so count.
    count = pos = 0
    while pos + _CENTRAL_HEADER_SIZE <= len(directory):
        name, extra, comment = struct.unpack_from("<3H", directory, pos + 28)
        pos += _CENTRAL_HEADER_SIZE + name + extra + comment
        count += 1
        _check_count(archive, count, limits)


def _check_count(archive: Path, count: int, limits: ImportLimits) -> None:
    """Refuse an archive with more than max_members entries."""
    if count > limits.max_members:
        raise DataError(
            f"{archive}: archive has more than {limits.max_members:,} members (max_members)"
        )


def data_offsets(fh: IO[bytes], zf: zipfile.ZipFile, archive: Path) -> dict[zipfile.ZipInfo, int]:
    """Where each entry's data starts, refusing encrypted, bzip2/lzma or overlapping entries."""
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    for info in infos:
        if info.compress_type not in _METHODS:
            raise DataError(
                f"{archive}: {info.filename!r} uses compression {info.compress_type}; "
                "only stored or deflated zip entries are accepted"
            )
        if info.flag_bits & 0x1:
            raise DataError(f"{archive}: {info.filename!r} is encrypted")
    offsets: dict[zipfile.ZipInfo, int] = {}
    for info, after in zip(infos, [*infos[1:], None], strict=True):
        fh.seek(info.header_offset)
        head = fh.read(_LOCAL_HEADER.size)
        if len(head) < _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"no local header for {info.filename!r}")
        name_len, extra_len = _LOCAL_HEADER.unpack(head)[-2:]
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        # Overlapping entries reuse one compressed kernel many times (a zip bomb).
        end = after.header_offset if after else stdlib_internals.zip_directory_start(zf)
        if start + info.compress_size > end:
            other = repr(after.filename) if after else "the central directory"
            raise DataError(
                f"{archive}: zip entries {info.filename!r} and {other} overlap "
                "(a zip bomb construction); refused"
            )
        offsets[info] = start
    return offsets


def read_member(fh: IO[bytes], info: zipfile.ZipInfo, start: int, archive: Path) -> bytes:
    """Inflate one entry a chunk at a time; refuse output beyond its declared size or bad CRC."""
    fh.seek(start)
    left = info.compress_size
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    chunks: list[bytes] = []
    produced, crc, pending = 0, 0, b""
    while True:
        if not pending and left:
            pending = fh.read(min(CHUNK, left))
            left -= len(pending)
            if not pending:
                raise zipfile.BadZipFile(f"{info.filename!r} is truncated")
        if inflater is None:
            out, pending = pending, b""
        else:
            out = inflater.decompress(pending, CHUNK)
            pending = inflater.unconsumed_tail
        produced += len(out)
        if produced > info.file_size:
            raise DataError(
                f"{archive}: {info.filename!r} inflates to more than its declared "
                f"{info.file_size:,} bytes; refused"
            )
        crc = zlib.crc32(out, crc)
        chunks.append(out)
        if (inflater is not None and inflater.eof) or not (out or pending or left):
            break
    if produced != info.file_size or crc != info.CRC or (inflater is not None and not inflater.eof):
        raise zipfile.BadZipFile(f"{info.filename!r}: size or CRC-32 does not match its header")
    return b"".join(chunks)
