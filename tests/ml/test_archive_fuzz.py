"""Mutated archives of every supported format, imported under small budgets: every outcome
is a data set or a DataError with a plain message (naming the file, never a Python object),
never another exception, never past the memory budget (issue 19, item 7)."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ml.test_hostile_files import cifar_batch, png, tree
from worker.import_sandbox import Budget, ImportFailed, parse_in_child
from worker.ml.datasets.dataset import DataError, Dataset
from worker.ml.datasets.limits import MIB, ImportLimits
from worker.ml.datasets.load import load_dataset

# Small enough that no mutation can make this test process hold much: every reader checks
# them before allocating.
LIMITS = ImportLimits(
    max_bytes=8 * MIB,
    max_members=200,
    max_header_bytes=256 * 1024,
    max_image_pixels=1_000_000,
    max_total_pixels=4_000_000,
    max_classes=50,
    max_pickle_bytes=4 * MIB,
    max_pickle_ops=200_000,
    max_images=2_000,
    max_decoded_bytes=8 * MIB,
)
OBJECT_REPR = re.compile(r"object at 0x[0-9a-f]+")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _tar_bytes(files: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _cifar_files() -> dict[str, bytes]:
    import pickle

    files = {f"data_batch_{i}": cifar_batch(i, 3) for i in range(1, 6)}
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    return files | {"test_batch": cifar_batch(9, 4), "batches.meta": pickle.dumps(meta, 2)}


def _seeds() -> dict[str, bytes]:
    """One small valid file of each format, by file name (the suffix picks the reader)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    y = np.arange(6) % 3
    jpeg = io.BytesIO()
    from PIL import Image

    Image.fromarray(x[0]).save(jpeg, format="JPEG")
    zip_buffer = io.BytesIO()
    with zipfile.ZipFile(zip_buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in (tree() | {"test/dog/1.jpg": jpeg.getvalue()}).items():
            zf.writestr(name, data)
    return {
        "images.zip": zip_buffer.getvalue(),
        "arrays.npz": _npz_bytes(
            x_train=x, y_train=y, x_test=x[:3], y_test=y[:3], class_names=np.array(["a", "b", "c"])
        ),
        "cifar-10-python.tar.gz": _tar_bytes(_cifar_files(), "w:gz"),
        "cifar-10-python.tar": _tar_bytes(_cifar_files()),
    }


SEEDS = _seeds()
INNER_TAR = _tar_bytes(_cifar_files())
with zipfile.ZipFile(io.BytesIO(SEEDS["images.zip"])) as _zf:
    IMAGES = {info.filename: _zf.read(info) for info in _zf.infolist()}


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few byte flips, insertions, deletions, a cut or a block repeated."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "repeat"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and out:  # a header field to an extreme value
            value = draw(st.sampled_from([b"\x00", b"\xff", b"\xff\xff\xff\x7f", b"9" * 8]))
            out[at : at + len(value)] = value
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 64))]
        elif kind == "cut":
            del out[at:]
        elif kind == "repeat":
            out[at:at] = out[at : at + draw(st.integers(1, 512))] * draw(st.integers(2, 64))
    return bytes(out)


def header_positions(data: bytes) -> list[int]:
    """Where zip local/central headers and tar header blocks start: mutations there hit
    sizes, offsets, name lengths, methods and flags."""
    found = [m.start() for m in re.finditer(rb"PK\x01\x02|PK\x03\x04|PK\x05\x06", data)]
    found += [i for i in range(0, len(data) - 512, 512) if data[i + 257 : i + 262] == b"ustar"]
    return found


@st.composite
def header_mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """One field of one archive header (zip entry, tar block) set to a drawn value."""
    starts = header_positions(data)
    if not starts:
        return draw(mutated(data))
    out = bytearray(data)
    at = draw(st.sampled_from(starts)) + draw(st.integers(0, 300 if data[:2] != b"PK" else 45))
    value = draw(st.binary(min_size=1, max_size=8))
    out[at : at + len(value)] = value
    return bytes(out[: len(data)])


@st.composite
def npz_with_inflated_shape(draw: st.DrawFn) -> bytes:
    """An npz whose x_train or y_train header declares a drawn shape and dtype over a little
    real data (what a hostile writer controls without paying for the bytes)."""
    key = draw(st.sampled_from(["x_train", "y_train", "x_test", "class_names"]))
    shape = tuple(draw(st.lists(st.integers(0, 2**40), min_size=0, max_size=5)))
    descr = draw(st.sampled_from(["|u1", "<i8", "<f4", "<U100000", "|S7", "<c16", "|V0", ">u2"]))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": draw(st.booleans()), "shape": shape}
    )
    x = np.zeros((2, 32, 32, 3), np.uint8)
    arrays = {"x_train": x, "y_train": np.array([0, 1]), "x_test": x, "y_test": np.array([1, 0])}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            if name != key:
                npy = io.BytesIO()
                np.save(npy, arr)
                zf.writestr(f"{name}.npy", npy.getvalue())
        zf.writestr(f"{key}.npy", header.getvalue() + bytes(draw(st.integers(0, 4096))))
    return buffer.getvalue()


@st.composite
def inner_tar_mutated(draw: st.DrawFn) -> bytes:
    """A CIFAR tar.gz whose tar (not its gzip) was mutated: headers and pickles change."""
    inner = draw(st.one_of(header_mutated(INNER_TAR), mutated(INNER_TAR)))
    return gzip.compress(inner, compresslevel=1)


@st.composite
def image_mutated(draw: st.DrawFn) -> bytes:
    """An image-folder zip, valid as a zip, one of whose PNG/JPEG images was mutated (the
    image decoders see the damage, not the zip reader's CRC check)."""
    members = dict(IMAGES)
    name = draw(st.sampled_from(sorted(members)))
    members[name] = draw(st.one_of(mutated(members[name]), header_mutated(members[name])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return buffer.getvalue()


def files() -> st.SearchStrategy[tuple[str, bytes]]:
    per_seed = [
        st.tuples(st.just(name), st.one_of(mutated(data), header_mutated(data)))
        for name, data in SEEDS.items()
    ]
    return st.one_of(
        *per_seed,
        st.tuples(st.just("shape.npz"), npz_with_inflated_shape()),
        st.tuples(st.just("cifar-10-python.tar.gz"), inner_tar_mutated()),
        st.tuples(st.just("images.zip"), image_mutated()),
    )


def assert_plain_outcome(path: Path) -> None:
    """A Dataset, or a DataError naming the file with a plain message."""
    try:
        result = load_dataset(str(path), resize=True, limits=LIMITS)
    except DataError as exc:
        said = str(exc)
        assert said.startswith(str(path)) or path.name in said, said
        assert said.strip() and not OBJECT_REPR.search(said), said
        said.encode("utf-8")  # storable: no lone surrogates
        return
    assert isinstance(result, Dataset)


def test_the_seeds_import(tmp_path):
    for name, data in SEEDS.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert isinstance(load_dataset(str(path), resize=True, limits=LIMITS), Dataset)


@FUZZ
@given(case=files())
def test_mutated_archives_import_or_fail_plainly(tmp_path_factory, case):
    name, data = case
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    assert_plain_outcome(path)


@settings(FUZZ, max_examples=6)
@given(case=files())
def test_mutated_archives_in_the_child_stay_within_the_memory_budget(tmp_path_factory, case):
    """The same through the sandbox: a DataError or the data set's summary, or the memory
    or time budget's plain ImportFailed; never an 'unexpected error'."""
    name, data = case
    folder = tmp_path_factory.mktemp("fuzz-child")
    path = folder / name
    path.write_bytes(data)
    try:
        parsed = parse_in_child(
            str(path), work_dir=folder / "out", budget=Budget(512, 60), resize=True, limits=LIMITS
        )
    except DataError as exc:
        assert str(exc).strip() and not OBJECT_REPR.search(str(exc)), str(exc)
        return
    except ImportFailed as exc:
        assert "unexpected error" not in str(exc), str(exc)
        assert "STACKLAB_IMPORT_" in str(exc), str(exc)
        return
    assert parsed.summary["n_train"] >= 1 and parsed.peak_vm_mb < 512


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_cut_of_a_small_archive_fails_plainly(tmp_path, name):
    """Truncation at every 97th byte, exhaustively (hypothesis samples the rest)."""
    data = SEEDS[name]
    for cut in range(0, len(data), 97):
        path = tmp_path / name
        path.write_bytes(data[:cut])
        assert_plain_outcome(path)


def test_a_bare_png_named_as_an_archive_fails_plainly(tmp_path):
    for name in SEEDS:
        path = tmp_path / name
        path.write_bytes(png(1))
        assert_plain_outcome(path)
