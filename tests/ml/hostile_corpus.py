"""Hostile data set files of issue 19, built by code in milliseconds and a few MB of memory
(never the gigabytes they decode to): used by tests/ml/test_output_budgets.py and, through
real workers, tests/queue/test_hostile_imports.py."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from tests.ml.test_hostile_files import cifar_tar, png, raw_zip, stored, tree

ONE = np.zeros((1, 32, 32, 3), np.uint8)
BLOCK = 1 << 20


def _npy(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, arr)
    return buffer.getvalue()


def _deflated_repeat(head: bytes, unit: bytes, nbytes: int) -> tuple[bytes, int]:
    """Raw deflate of `head` and then `nbytes` of `unit` repeated, and the CRC-32 of it all,
    without ever holding the expanded bytes: one compressed MiB repeated (each piece ends in
    a full flush, so none refers back past its start)."""
    assert BLOCK % len(unit) == 0 and nbytes % len(unit) == 0
    block = unit * (BLOCK // len(unit))

    def piece(data: bytes, final: bool) -> bytes:
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        return comp.compress(data) + comp.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)

    whole, rest = divmod(nbytes, BLOCK)
    packed, crc = [piece(head, False)], zlib.crc32(head)
    one = piece(block, False)
    for _ in range(whole):
        packed.append(one)
        crc = zlib.crc32(block, crc)
    packed.append(piece(block[:rest], True))
    return b"".join(packed), zlib.crc32(block[:rest], crc)


def declared_member(name: str, descr: str, shape: tuple[int, ...], unit: bytes) -> tuple:
    """A raw_zip member: an honest .npy of `shape`, its data `unit` repeated, deflated."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    nbytes = int(np.prod(shape)) * np.dtype(descr).itemsize
    data, crc = _deflated_repeat(header.getvalue(), unit, nbytes)
    return (name, data, zipfile.ZIP_DEFLATED, crc, len(header.getvalue()) + nbytes)


def zeros_npz(path: Path, images: int = 400_000) -> Path:
    """The issue's first row: about 1.2 MB on disk, an honest npz of `images` zero images
    (1.23 GB once read), labels included."""
    return raw_zip(
        path,
        [
            declared_member("x_train.npy", "|u1", (images, 32, 32, 3), b"\0"),
            declared_member("y_train.npy", "<i8", (images,), b"\0"),
            stored("x_test.npy", _npy(ONE)),
            stored("y_test.npy", _npy(np.array([0]))),
        ],
    )


def long_class_names_npz(path: Path, classes: int = 1000, chars: int = 60_000) -> Path:
    """The issue's second row: about 240 KB, `classes` class names of `chars` characters
    (240 MB as a str array; 60 MB of JSON on every page that listed data sets)."""
    y = np.arange(classes)
    return raw_zip(
        path,
        [
            declared_member("x_train.npy", "|u1", (classes, 32, 32, 3), b"\0"),
            stored("y_train.npy", _npy(y)),
            declared_member("x_test.npy", "|u1", (classes, 32, 32, 3), b"\0"),
            stored("y_test.npy", _npy(y)),
            declared_member("class_names.npy", f"<U{chars}", (classes,), "a".encode("utf-32-le")),
        ],
    )


def many_short_names_npz(path: Path, classes: int = 1000, chars: int = 90) -> Path:
    """1,000 distinct names within the per-name cap that together pass the summary cap."""
    names = np.array([f"{i:04d}".ljust(chars, "x") for i in range(classes)])
    y = np.arange(classes)
    x = np.zeros((classes, 32, 32, 3), np.uint8)
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, class_names=names)
    return path


def bad_text_names_npz(path: Path, name: str = "ca\x00t") -> Path:
    """Class names holding NUL (or any character jobspec.text refuses)."""
    y = np.array([0, 1])
    x = np.zeros((2, 32, 32, 3), np.uint8)
    names = np.array([name, "dog"])
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, class_names=names)
    return path


def non_utf8_names_npz(path: Path) -> Path:
    """Class names as bytes that are not UTF-8 (was 'unexpected error (UnicodeDecodeError)')."""
    y = np.array([0, 1])
    x = np.zeros((2, 32, 32, 3), np.uint8)
    names = np.array([b"\xff\xfe", b"dog"])
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, class_names=names)
    return path


def non_utf8_label_names_cifar(path: Path) -> Path:
    """A CIFAR archive whose batches.meta names a class in bytes that are not UTF-8."""
    names = [b"\xff\xfe\xfd", *(f"c{i}".encode() for i in range(1, 10))]
    return cifar_tar(path, **{"batches.meta": pickle.dumps({b"label_names": names}, 2)})


def many_images_cifar(path: Path, per_batch: int = 100) -> Path:
    """A CIFAR archive of 6 x per_batch zero images (import it with a small max_images)."""
    files = {}
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        batch = {b"labels": [0] * per_batch, b"data": np.zeros((per_batch, 3072), np.uint8)}
        files[name] = pickle.dumps(batch, 2)
    files["batches.meta"] = pickle.dumps({b"label_names": [b"a", b"b"]}, 2)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def junk_image_zip(path: Path) -> Path:
    """An image folder with one member that is no image at all (PIL named its BytesIO)."""
    return raw_zip(path, [stored(n, d) for n, d in (tree() | {"train/cat/9.png": b"junk"}).items()])


def truncated_png_zip(path: Path) -> Path:
    """An image folder with a PNG cut in half."""
    return raw_zip(
        path, [stored(n, d) for n, d in (tree() | {"train/cat/9.png": png(5)[:60]}).items()]
    )


def control_folder_zip(path: Path, folder: str = "ca\x1bt") -> Path:
    """An image folder whose class folder name holds a control character (ESC)."""
    files = {k.replace("/cat/", f"/{folder}/"): v for k, v in tree().items()}
    return raw_zip(path, [stored(n, d) for n, d in files.items()])


def non_utf8_name_zip(path: Path) -> Path:
    """A zip whose entry is flagged UTF-8 but whose name is not (zipfile's decode raised)."""
    data = png(0)
    name = b"train/\xff\xfe/0.png"
    crc = zlib.crc32(data)
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0x800, 0, 0, 0, crc, len(data), len(data), len(name), 0
    )
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0x800, 0, 0, 0, crc, len(data), len(data),
        len(name), 0, 0, 0, 0, 0, 0,
    ) + name  # fmt: skip
    body = local + name + data
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(body), 0)
    path.write_bytes(body + central + end)
    return path


def float_pixels_npz(path: Path, images: int = 60_000) -> Path:
    """A 60,000-image npz of float64 zeros (1.47 GB decoded, refused by dtype from its header)."""
    return raw_zip(
        path,
        [
            declared_member("x_train.npy", "<f8", (images, 32, 32, 3), b"\0" * 8),
            stored("y_train.npy", _npy(np.zeros(images, np.int64))),
            stored("x_test.npy", _npy(ONE)),
            stored("y_test.npy", _npy(np.array([0]))),
        ],
    )


def big_labels_npz(path: Path, labels: int = 100_000_000) -> Path:
    """One image and 100 million int64 labels (800 MB decoded): the decoded-bytes budget."""
    return raw_zip(
        path,
        [
            stored("x_train.npy", _npy(ONE)),
            declared_member("y_train.npy", "<i8", (labels,), b"\0" * 8),
            stored("x_test.npy", _npy(ONE)),
            stored("y_test.npy", _npy(np.array([0]))),
        ],
    )
