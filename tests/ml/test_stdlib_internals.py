"""The archive guards' window on zipfile's and tarfile's private parts
(worker/ml/datasets/stdlib_internals.py): what it returns matches what the library itself
parses, its hooks see every header, and no other module of the project touches a private
name of the standard library."""

from __future__ import annotations

import ast
import io
import sys
import tarfile
import zipfile

import pytest

from tests.test_imports import PACKAGES, ROOT
from worker.ml.datasets import stdlib_internals

INTERNALS_MODULE = "worker/ml/datasets/stdlib_internals.py"
DOCUMENTED = {"os._exit"}  # underscored, yet public API


def _zip(names: list[str], prefix: bytes = b"") -> io.BytesIO:
    buffer = io.BytesIO()
    buffer.write(prefix)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            zf.writestr(name, name.encode() * 10)
    buffer.seek(0)
    return buffer


def _as_zipfile_sees_it(buffer: io.BytesIO) -> stdlib_internals.CentralDirectory:
    with zipfile.ZipFile(buffer) as zf:
        start = stdlib_internals.zip_directory_start(zf)
        assert start == zf.start_dir
        return stdlib_internals.CentralDirectory(start, -1, len(zf.infolist()))


@pytest.mark.parametrize("prefix", [b"", b"#!/bin/sh\nexit 0\n" * 3], ids=["plain", "stub"])
def test_the_central_directory_is_where_zipfile_reads_it(prefix):
    buffer = _zip(["a.txt", "b/c.txt", "d.png"], prefix)
    found = stdlib_internals.zip_central_directory(buffer)
    seen = _as_zipfile_sees_it(buffer)
    assert found is not None
    assert (found.start, found.entries) == (seen.start, seen.entries)
    buffer.seek(found.start)
    directory = buffer.read(found.size)
    assert directory[:4] == b"PK\x01\x02" and directory.count(b"PK\x01\x02") == 3


def test_a_zip64_end_record_is_followed(monkeypatch):
    with monkeypatch.context() as patch:  # any count over the limit makes zipfile write zip64
        patch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
        buffer = _zip(["a", "b", "c"])
    assert b"PK\x06\x06" in buffer.getvalue()  # the zip64 end record is there
    found = stdlib_internals.zip_central_directory(buffer)
    assert found is not None
    assert (found.start, found.entries) == (_as_zipfile_sees_it(buffer).start, 3)


def test_not_a_zip_has_no_central_directory():
    assert stdlib_internals.zip_central_directory(io.BytesIO(b"not a zip" * 100)) is None


def _tar(members: list[tarfile.TarInfo], fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tf:
        for info in members:
            tf.addfile(info, io.BytesIO(b"x" * info.size))
    return buffer.getvalue()


def _read(data: bytes, tarinfo: type[tarfile.TarInfo]) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", tarinfo=tarinfo) as tf:
        return [member.name for member in tf]


class Refused(Exception):
    pass


def _refuse(info: tarfile.TarInfo):
    raise Refused(info.name)


def test_every_tar_header_is_seen_before_tarfile_reads_its_content():
    long_name = "d/" + "n" * 300  # a GNU long-name record before its member's header
    a, b = tarfile.TarInfo("a.txt"), tarfile.TarInfo(long_name)
    a.size, b.size = 5, 7
    seen: list[tuple[str, int]] = []

    def on_header(info: tarfile.TarInfo) -> None:
        seen.append((info.name, stdlib_internals.tar_header_bytes(info)))

    names = _read(
        _tar([a, b], tarfile.GNU_FORMAT), stdlib_internals.hooked_tarinfo(on_header, _refuse)
    )
    assert names == ["a.txt", long_name]
    blocks = [cost for _, cost in seen]
    assert blocks[0] == tarfile.BLOCKSIZE  # a plain header
    assert blocks[1] == tarfile.BLOCKSIZE + len(long_name) + 1  # the long name, read whole
    assert blocks[2] == tarfile.BLOCKSIZE and len(seen) == 3


def test_a_pax_record_counts_its_whole_content():
    info = tarfile.TarInfo("p.txt")
    info.pax_headers = {"comment": "c" * 5000}
    costs: list[int] = []
    hooked = stdlib_internals.hooked_tarinfo(
        lambda i: costs.append(stdlib_internals.tar_header_bytes(i)), _refuse
    )
    assert _read(_tar([info], tarfile.PAX_FORMAT), hooked) == ["p.txt"]
    assert costs[0] > tarfile.BLOCKSIZE + 5000 and costs[1:] == [tarfile.BLOCKSIZE]


@pytest.mark.parametrize(
    "pax",
    [
        {"GNU.sparse.map": "0,1"},  # 0.1
        {"GNU.sparse.size": "1", "GNU.sparse.offset": "0", "GNU.sparse.numbytes": "1"},  # 0.0
        {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s"},  # 1.0
    ],
    ids=["0.1", "0.0", "1.0"],
)
def test_pax_sparse_maps_are_refused_before_they_are_parsed(pax):
    info = tarfile.TarInfo("s")
    info.size, info.pax_headers = 1, pax
    hooked = stdlib_internals.hooked_tarinfo(lambda i: None, _refuse)
    with pytest.raises(Refused):
        _read(_tar([info], tarfile.PAX_FORMAT), hooked)


def test_a_gnu_sparse_member_is_refused():
    info = tarfile.TarInfo("g")
    info.type = tarfile.GNUTYPE_SPARSE
    hooked = stdlib_internals.hooked_tarinfo(lambda i: None, _refuse)
    with pytest.raises(Refused, match="g"):
        _read(_tar([info], tarfile.GNU_FORMAT), hooked)


def test_this_python_has_every_internal_the_guards_use(monkeypatch):
    assert stdlib_internals.missing_internals() == []
    monkeypatch.delattr(zipfile, "_EndRecData")
    monkeypatch.delattr(tarfile.TarInfo, "_proc_member")
    assert stdlib_internals.missing_internals() == [
        "zipfile._EndRecData",
        "tarfile.TarInfo._proc_member",
    ]


def _private_stdlib_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """`module._name` on an imported stdlib module, and `super()._name` in a class that
    derives from a stdlib class."""
    stdlib = {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] in sys.stdlib_module_names
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if node.attr.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in stdlib:
                found.append((node.lineno, f"{node.value.id}.{node.attr}"))
        if isinstance(node, ast.ClassDef) and any(
            isinstance(b, ast.Attribute) and isinstance(b.value, ast.Name) and b.value.id in stdlib
            for b in node.bases
        ):
            for item in ast.walk(node):
                name = item.name if isinstance(item, ast.FunctionDef) else ""
                if name.startswith("_") and not name.startswith("__"):
                    found.append((item.lineno, f"{node.name} overrides {name}"))
    return [(line, what) for line, what in found if what not in DOCUMENTED]


def test_only_the_internals_module_touches_private_stdlib_names():
    bad = [
        f"{path.relative_to(ROOT)}:{line} {what}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.relative_to(ROOT).as_posix() != INTERNALS_MODULE
        for line, what in _private_stdlib_uses(ast.parse(path.read_text()))
    ]
    assert not bad, "\n".join(bad)
    own = _private_stdlib_uses(ast.parse((ROOT / INTERNALS_MODULE).read_text()))
    assert {what for _, what in own} >= {
        "zipfile._EndRecData",
        "HookedTarInfo overrides _proc_member",
    }
