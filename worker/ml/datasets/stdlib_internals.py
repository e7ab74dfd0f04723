"""The private parts of `zipfile` and `tarfile` the archive guards rely on, and nothing else.

The guards must see an archive exactly as the standard library will parse it, before it
parses the dangerous parts: where zipfile finds a zip's central directory (its own end-record
reader), and a hook on every tar header before tarfile reads that header's content (a
`TarInfo` subclass overriding `_proc_member` and the pax sparse parsers). None of that is
public API, so it lives here alone: every private name is checked when this module is
imported, so a Python that renamed one fails loudly instead of silently skipping a guard
(an override of a renamed method would simply never run), and
tests/ml/test_stdlib_internals.py pins what each function returns against the library.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, NoReturn

# What this module touches that the standard library does not document.
ZIPFILE_NAMES = ("_EndRecData", "_ECD_SIZE", "_ECD_ENTRIES_TOTAL", "_ECD_LOCATION",
                 "_ECD_SIGNATURE", "stringEndArchive64", "sizeEndCentDir64",
                 "sizeEndCentDir64Locator")  # fmt: skip
TARINFO_HOOKS = ("_proc_member", "_proc_gnusparse_00", "_proc_gnusparse_01", "_proc_gnusparse_10")
# Tar headers whose content tarfile reads whole: GNU long names and pax records.
_EXTENSION_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


def missing_internals() -> list[str]:
    """The private names above that this Python's zipfile or tarfile lacks."""
    missing = [f"zipfile.{n}" for n in ZIPFILE_NAMES if not hasattr(zipfile, n)]
    missing += [f"tarfile.TarInfo.{n}" for n in TARINFO_HOOKS if not hasattr(tarfile.TarInfo, n)]
    return missing


if _missing := missing_internals():
    raise ImportError(f"the archive guards need stdlib internals this Python lacks: {_missing}")


@dataclass(frozen=True)
class CentralDirectory:
    """Where zipfile will read a zip's central directory, as its end record says."""

    start: int  # offset in the file (zipfile's `start_dir`)
    size: int  # bytes
    entries: int  # as declared: may lie


def zip_central_directory(fh: IO[bytes]) -> CentralDirectory | None:
    """The central directory zipfile would read (None: no end record, not a zip)."""
    end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]
    if not end:
        return None
    size, entries = end[zipfile._ECD_SIZE], end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
    start = end[zipfile._ECD_LOCATION] - size  # type: ignore[attr-defined]
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
    return CentralDirectory(start=max(start, 0), size=size, entries=entries)


def zip_directory_start(zf: zipfile.ZipFile) -> int:
    """Where an open ZipFile's central directory starts: entry data ends before it."""
    return zf.start_dir


def tar_header_bytes(info: tarfile.TarInfo) -> int:
    """Bytes tarfile reads for this header before the member's data: the header block,
    and the whole content of a GNU long-name or pax record."""
    return tarfile.BLOCKSIZE + (info.size if info.type in _EXTENSION_TYPES else 0)


def hooked_tarinfo(
    on_header: Callable[[tarfile.TarInfo], None],
    on_sparse: Callable[[tarfile.TarInfo], NoReturn],
) -> type[tarfile.TarInfo]:
    """A TarInfo class for `tarfile.open(..., tarinfo=...)` that calls `on_header` with every
    header (long names and pax records too) before tarfile reads its content, and
    `on_sparse` instead of parsing any sparse map (GNU or pax: loops bounded only by the
    archive's length). `on_sparse` must raise."""

    def refuse_sparse(self: tarfile.TarInfo, *args: object) -> NoReturn:
        on_sparse(self)

    class HookedTarInfo(tarfile.TarInfo):
        # tarfile's source names _proc_member as the hook for subclasses.
        def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
            if self.type == tarfile.GNUTYPE_SPARSE:
                on_sparse(self)
            on_header(self)
            return super()._proc_member(tf)  # type: ignore[misc]

        _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = refuse_sparse

    return HookedTarInfo
