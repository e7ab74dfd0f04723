"""Hostile uploads: each is refused quickly, with little memory, naming the file and problem."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.stack import scaled
from worker.ml.datasets.archive_safety import read_tar_files, read_zip_files
from worker.ml.datasets.dataset import DataError
from worker.ml.datasets.demo import make_demo
from worker.ml.datasets.limits import ImportLimits
from worker.ml.datasets.load import load_dataset
from worker.ml.datasets.pickle_safety import safe_unpickle

REPO_ROOT = Path(__file__).parents[2]
CIFAR_DIR = "cifar-10-batches-py"
CLASSES = ("cat", "dog")

# Runs one import in a fresh interpreter and reports the work it did (CPU seconds: unlike
# wall-clock time, a busy machine barely changes them) and its peak memory growth. The
# address-space cap keeps a regression from eating the machine: it fails as a MemoryError.
CHILD = r"""
import json, resource, sys
from worker.ml.datasets.dataset import DataError
from worker.ml.datasets.load import load_dataset

def vm_bytes():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))

resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (3 << 29), resource.RLIM_INFINITY))
def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = cpu_seconds()
try:
    load_dataset(sys.argv[1], resize=sys.argv[2] == "1")
    outcome = "imported"
except DataError as exc:
    outcome = f"DataError: {exc}"
except BaseException as exc:
    outcome = f"{type(exc).__name__}: {exc}"
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"outcome": outcome[:600], "cpu_seconds": cpu_seconds() - start,
                  "grew_mb": grew / 1024}))
"""


def probe(path: Path, *, resize: bool = False, timeout: float = 300) -> dict:
    """Import path in a child process: {'outcome', 'cpu_seconds', 'grew_mb'}."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), "1" if resize else "0"],
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        cwd=REPO_ROOT,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_refused_cheaply(path: Path, message: str, *, max_mb: float = 100) -> None:
    """The import fails with a DataError naming the file and message, having done little
    work (< 5 CPU seconds: a bomb opened in full takes minutes) and grown < max_mb."""
    result = probe(path)
    assert result["outcome"].startswith(f"DataError: {path}"), result
    assert message in result["outcome"], result
    assert result["cpu_seconds"] < 5, result
    assert result["grew_mb"] < max_mb, result


# --- file builders ------------------------------------------------------------------------


def png(seed: int = 0, size: tuple[int, int] = (32, 32)) -> bytes:
    """One random RGB PNG."""
    arr = np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def tree(classes: tuple[str, ...] = CLASSES, size: tuple[int, int] = (32, 32)) -> dict:
    """A train/test image tree with two images a class in train and one in test."""
    files = {}
    for c, cls in enumerate(classes):
        for split, n in (("train", 2), ("test", 1)):
            for i in range(n):
                files[f"{split}/{cls}/{i}.png"] = png(c * 3 + i, size)
    return files


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    """An ordinary deflated zip."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def local_record(name: str, data: bytes, method: int, crc: int, size: int) -> bytes:
    """A zip local file header followed by the (compressed) data."""
    n = name.encode()
    head = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size, len(n), 0
    )
    return head + n + data


def central_record(name: str, offset: int, csize: int, method: int, crc: int, size: int) -> bytes:
    """A zip central-directory entry pointing at a local header."""
    n = name.encode()
    return struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, csize, size,
        len(n), 0, 0, 0, 0, 0, offset,
    ) + n  # fmt: skip


def raw_zip(path: Path, members: list[tuple], aliases: tuple[tuple[str, int], ...] = ()) -> Path:
    """A zip written by hand: members are (name, data, method, crc, declared size); each alias
    (name, index) adds a central entry pointing at member index's local data."""
    body, central, offsets = b"", [], []
    for name, data, method, crc, size in members:
        offsets.append(len(body))
        central.append(central_record(name, len(body), len(data), method, crc, size))
        body += local_record(name, data, method, crc, size)
    for name, index in aliases:
        _, data, method, crc, size = members[index]
        central.append(central_record(name, offsets[index], len(data), method, crc, size))
    cd = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), len(cd),
                      len(body), 0)  # fmt: skip
    path.write_bytes(body + cd + end)
    return path


def stored(name: str, data: bytes) -> tuple:
    """A raw_zip member stored uncompressed, with honest headers."""
    return (name, data, 0, zlib.crc32(data), len(data))


def cifar_batch(seed: int, n: int, labels: object = None) -> bytes:
    """A pickled batch in the official layout (protocol 2, bytes keys)."""
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"fake batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)] if labels is None else labels,
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return pickle.dumps(batch, protocol=2)


def cifar_tar(path: Path, names: int = 10, **replace: bytes) -> Path:
    """A cifar-10-python.tar.gz of tiny batches; keyword arguments replace files."""
    files = {f"data_batch_{i}": cifar_batch(i, 3) for i in range(1, 6)}
    meta = {b"label_names": [f"c{i}".encode() for i in range(names)]}
    files |= {"test_batch": cifar_batch(9, 4), "batches.meta": pickle.dumps(meta, 2)} | replace
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{CIFAR_DIR}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def shared_nested_list(k: int, levels: int) -> list:
    """k**(levels+1) elements when expanded, a few KB pickled: every level shares one list."""
    nested: list = [0] * k
    for _ in range(levels):
        nested = [nested] * k
    return nested


def deflated_zeros(n_mib: int) -> bytes:
    """Raw deflate of n_mib MiB of zero bytes (about 1,000 times smaller)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    zero = bytes(1 << 20)
    return b"".join(comp.compress(zero) for _ in range(n_mib)) + comp.flush()


# --- the tester's probes ------------------------------------------------------------------


def test_npz_with_a_huge_label_and_no_class_names_is_refused_before_allocating(tmp_path):
    x = np.zeros((1, 32, 32, 3), np.uint8)
    path = tmp_path / "huge_label.npz"
    np.savez(path, x_train=x, y_train=np.array([2**40]), x_test=x, y_test=np.array([0]))
    assert_refused_cheaply(path, "labels go up to 1,099,511,627,776")


def test_npz_class_names_longer_than_max_classes_are_refused(tmp_path):
    x = np.zeros((1, 32, 32, 3), np.uint8)
    path = tmp_path / "names.npz"
    names = np.array([f"c{i}" for i in range(5)])
    np.savez(
        path, x_train=x, y_train=np.array([0]), x_test=x, y_test=np.array([0]), class_names=names
    )
    with pytest.raises(DataError, match=r"names.npz: 5 classes, more than the 4 allowed"):
        load_dataset(str(path), limits=ImportLimits(max_classes=4))


def test_npz_member_declaring_more_data_than_it_holds_is_refused_before_allocating(tmp_path):
    x = np.zeros((1, 32, 32, 3), np.uint8)
    path = tmp_path / "lying.npz"
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False,
                                                "shape": (10**6, 32, 32, 3)})  # fmt: skip
    with zipfile.ZipFile(path, "w") as zf:
        for key, arr in {"x_train": x, "y_train": np.array([0]), "y_test": np.array([0])}.items():
            buf = io.BytesIO()
            np.save(buf, arr)
            zf.writestr(f"{key}.npy", buf.getvalue())
        zf.writestr("x_test.npy", head.getvalue() + bytes(100))
    with pytest.raises(DataError, match=r"lying.npz: x_test declares 3,072,000,000 bytes"):
        load_dataset(str(path))


# The probes as files (also uploaded through real workers in tests/queue/test_hostile_imports).


def nested_labels_cifar(path: Path) -> Path:
    """A 15 KB CIFAR archive whose labels are shared nested lists (numpy would expand them)."""
    bomb = cifar_batch(1, 3, labels=shared_nested_list(k=40, levels=5))
    assert len(bomb) < 15_000
    return cifar_tar(path, data_batch_1=bomb)


def inflating_zip(path: Path) -> Path:
    """An image zip with an entry that says 1,000 bytes and inflates to 400 MiB."""
    lie = (
        "train/cat/9.png",
        deflated_zeros(400),
        zipfile.ZIP_DEFLATED,
        zlib.crc32(bytes(1000)),
        1000,
    )
    return raw_zip(path, [lie, *(stored(name, data) for name, data in tree().items())])


def many_members_tar(path: Path) -> Path:
    """A CIFAR-named tar.gz of 200,000 empty members."""
    block = tarfile.TarInfo(f"{CIFAR_DIR}/pad").tobuf()
    path.write_bytes(gzip.compress(block * 200_000 + bytes(1024), compresslevel=1))
    return path


def overlapping_zip(path: Path) -> Path:
    """Two central-directory entries pointing at the same local data."""
    members = [stored(name, data) for name, data in tree().items()]
    return raw_zip(path, members, aliases=(("train/cat/0.png", 0),))


def many_class_names_npz(path: Path, classes: int = 5000) -> Path:
    """A tiny npz naming 5,000 classes."""
    x = np.zeros((1, 32, 32, 3), np.uint8)
    names = np.array([f"c{i}" for i in range(classes)])
    y = np.array([0])
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y, class_names=names)
    return path


def test_cifar_labels_of_shared_nested_lists_are_refused_before_numpy_expands_them(tmp_path):
    path = nested_labels_cifar(tmp_path / "cifar-10-python.tar.gz")
    assert_refused_cheaply(path, "data_batch_1 labels must be a flat list of 3 integers")


def test_zip_member_inflating_past_its_declared_size_is_refused_streaming(tmp_path):
    path = inflating_zip(tmp_path / "inflates.zip")
    assert_refused_cheaply(path, "'train/cat/9.png' inflates to more than its declared 1,000")


def test_tar_with_200k_empty_members_is_refused_at_the_member_cap(tmp_path):
    path = many_members_tar(tmp_path / "members.tar.gz")
    assert_refused_cheaply(path, "more than 1,000 members")


def test_zip_entries_sharing_local_data_are_refused_as_overlapping(tmp_path):
    path = overlapping_zip(tmp_path / "overlap.zip")
    assert_refused_cheaply(path, "overlap")


def test_npz_naming_5000_classes_is_refused(tmp_path):
    assert_refused_cheaply(many_class_names_npz(tmp_path / "names.npz"), "5,000 classes")


def test_image_header_over_the_pixel_cap_is_refused_even_if_pil_allows_it(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # someone disabled PIL's own check
    big = bytearray(png(0))
    ihdr = big.index(b"IHDR")
    big[ihdr + 4 : ihdr + 12] = struct.pack(">2L", 100_000, 100_000)
    big[ihdr + 17 : ihdr + 21] = struct.pack(">L", zlib.crc32(bytes(big[ihdr : ihdr + 17])))
    path = write_zip(tmp_path / "wide.zip", tree() | {"train/cat/9.png": bytes(big)})
    # Refused at the header: decoding 10^10 pixels would have failed on memory, not this.
    with pytest.raises(DataError, match=r"wide.zip: train/cat/9.png: image is 100000x100000"):
        load_dataset(str(path), resize=True)


def test_resize_imports_stop_at_the_total_decoded_pixel_budget(tmp_path):
    path = write_zip(tmp_path / "photos.zip", tree(size=(64, 48)))
    ds = load_dataset(str(path), resize=True)
    assert ds.x_train.shape == (4, 32, 32, 3)
    with pytest.raises(DataError, match=r"photos.zip: .*more than 10,000 decoded pixels"):
        load_dataset(str(path), resize=True, limits=ImportLimits(max_total_pixels=10_000))


def test_image_folder_with_more_class_folders_than_max_classes_is_refused(tmp_path):
    image = png(0)
    files = {f"{s}/c{i:04d}/0.png": image for i in range(1001) for s in ("train", "test")}
    path = write_zip(tmp_path / "classes.zip", files)
    assert_refused_cheaply(path, "1,001 classes, more than the 1,000 allowed")


def test_cifar_label_names_longer_than_max_classes_are_refused(tmp_path):
    path = cifar_tar(tmp_path / "cifar-10-python.tar.gz", names=1001)
    with pytest.raises(DataError, match=r"batches.meta: 1,001 classes, more than the 1,000"):
        load_dataset(str(path))


# --- the other budgets --------------------------------------------------------------------


def test_zip_members_and_central_directory_are_capped_before_zipfile_parses_them(tmp_path):
    path = write_zip(tmp_path / "many.zip", {f"train/cat/{i}.png": b"" for i in range(50)})
    with pytest.raises(DataError, match=r"many.zip: .*more than 10 members"):
        list(read_zip_files(path, ImportLimits(max_members=10)))
    with pytest.raises(DataError, match=r"many.zip: central directory .* more than 1,000 bytes"):
        list(read_zip_files(path, ImportLimits(max_header_bytes=1000)))
    raw = bytearray(path.read_bytes())
    raw[-14:-10] = struct.pack("<2H", 1, 1)  # the end record now claims a single entry
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"many.zip: .*more than 10 members"):
        list(read_zip_files(path, ImportLimits(max_members=10)))


def test_zip_compression_other_than_deflate_is_refused(tmp_path):
    path = tmp_path / "bz2.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("train/cat/0.png", png(0))
    with pytest.raises(DataError, match=r"bz2.zip: 'train/cat/0.png' uses compression 12"):
        list(read_zip_files(path, ImportLimits()))


def test_tar_extension_headers_count_against_the_header_budget(tmp_path):
    path = tmp_path / "pax.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("x")
        info.pax_headers = {"comment": "y" * 200_000}
        tf.addfile(info, io.BytesIO(b""))
    limits = ImportLimits(max_header_bytes=100_000)
    with pytest.raises(DataError, match=r"pax.tar: tar headers .* more than 100,000 bytes"):
        read_tar_files(path, lambda parts: True, limits)
    assert read_tar_files(path, lambda parts: True, ImportLimits()) == {("x",): b""}


def test_pickles_over_the_op_depth_or_size_budget_are_refused():
    with pytest.raises(DataError, match="lbl: pickle has more than 1,000 opcodes"):
        safe_unpickle(pickle.dumps(list(range(2000))), "lbl", ImportLimits(max_pickle_ops=1000))
    deep: list = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(DataError, match="lbl: pickle nests deeper than 32"):
        safe_unpickle(pickle.dumps(deep), "lbl", ImportLimits())
    with pytest.raises(DataError, match="lbl: pickle is 1,0.. bytes, more than 1,000"):
        safe_unpickle(pickle.dumps(b"x" * 1000), "lbl", ImportLimits(max_pickle_bytes=1000))
    lying = b"\x80\x02B" + struct.pack("<L", 2**31) + b"short" + b"."  # BINBYTES claims 2 GB
    with pytest.raises(DataError, match="lbl: not a valid pickle"):
        safe_unpickle(lying, "lbl", ImportLimits())


# --- legitimate files still import --------------------------------------------------------


def test_a_real_sized_cifar_batch_unpickles():
    """Its speed (about 0.5 s here; official py2 batches 0.2 s): bench/import_speed.py."""
    data = cifar_batch(0, 10_000)
    batch = safe_unpickle(data, "data_batch_1", ImportLimits())
    assert batch[b"data"].shape == (10_000, 3072) and len(batch[b"labels"]) == 10_000


def test_legitimate_npz_image_zip_and_cifar_tar_still_import(tmp_path):
    demo = make_demo(seed=0, n_train=50, n_test=20).save(tmp_path / "demo.npz")
    assert load_dataset(str(demo)).num_classes == 10
    assert load_dataset(str(write_zip(tmp_path / "pets.zip", tree()))).class_names == CLASSES
    ds = load_dataset(str(cifar_tar(tmp_path / "cifar-10-python.tar.gz")))
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.num_classes == 10


def test_limits_are_configurable_and_checked(tmp_path):
    path = write_zip(tmp_path / "four.zip", tree(("a", "b", "c", "d")))
    assert load_dataset(str(path)).num_classes == 4
    with pytest.raises(DataError, match=r"four.zip: 4 classes, more than the 3 allowed"):
        load_dataset(str(path), limits=ImportLimits(max_classes=3))
    with pytest.raises(ValueError, match="max_classes must be a positive integer"):
        ImportLimits(max_classes=0)
