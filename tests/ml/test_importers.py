"""Tests for the importers: .npz, image folders, CIFAR-10 archives and the Keras download."""

from __future__ import annotations

import io
import os
import pickle
import socket
import struct
import sys
import tarfile
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from worker.ml.datasets import cifar as importers
from worker.ml.datasets.cifar import import_cifar_archive, load_cifar10_keras
from worker.ml.datasets.dataset import DataError
from worker.ml.datasets.image_folder import import_image_folder
from worker.ml.datasets.load import load_dataset
from worker.ml.datasets.npz import import_npz

SUBSET_ZIP = Path(__file__).parents[2].parent / "shared/data/cifar10-jpeg-subset.zip"
CIFAR_NAMES = importers.CIFAR10_CLASSES


def pixels(seed: int, n: int = 1, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Random uint8 RGB images (n, h, w, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def encode(arr: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    """One image encoded as PNG or JPEG bytes."""
    img = Image.fromarray(arr)
    buf = io.BytesIO()
    (img.convert(mode) if mode else img).save(buf, format=fmt)
    return buf.getvalue()


def folder_files(prefix: str = "", fmt: str = "PNG") -> dict[str, bytes]:
    """A two-class train/test image tree as {relative name: bytes}."""
    files = {}
    for split, n in (("train", 3), ("test", 2)):
        for c, cls in enumerate(("dog", "cat")):
            for i in range(n):
                files[f"{prefix}{split}/{cls}/{i}.png"] = encode(pixels(c * 10 + i)[0], fmt)
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write {relative name: bytes} under root."""
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    """A zip holding {member name: bytes}, names kept verbatim (even unsafe ones)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def write_npz(path: Path, **overrides) -> Path:
    """A plain npz of 4 train / 2 test images in 3 classes; keyword arguments override arrays."""
    arrays = dict(
        x_train=pixels(1, 4),
        y_train=np.array([[0], [1], [2], [1]], np.uint8),
        x_test=pixels(2, 2),
        y_test=np.array([[2], [0]], np.uint8),
    )
    np.savez(path, **(arrays | overrides))
    return path


# --- npz ----------------------------------------------------------------------------------


def test_import_npz_reads_plain_arrays_and_flattens_keras_labels(tmp_path):
    ds = import_npz(write_npz(tmp_path / "mine.npz"))
    assert ds.x_train.shape == (4, 32, 32, 3) and ds.y_train.tolist() == [0, 1, 2, 1]
    assert (ds.name, ds.source, ds.class_names) == ("mine", "npz", ("0", "1", "2"))
    assert np.array_equal(ds.x_test, pixels(2, 2))


def test_import_npz_uses_class_names_when_present(tmp_path):
    path = write_npz(tmp_path / "d.npz", class_names=np.array([b"x", b"y", b"z", b"w"]))
    assert load_dataset(str(path)).class_names == ("x", "y", "z", "w")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"x_train": pixels(1, 4, (28, 28))}, r"x_train has shape \(4, 28, 28, 3\)"),
        ({"x_test": pixels(2, 2).astype(np.float32) / 255}, "x_test has dtype float32"),
        ({"y_train": np.array([0, 1, -1, 1])}, r"y_train has labels outside \[0, 3\): -1"),
        ({"class_names": np.array(["a", "b"])}, r"y_train has labels outside \[0, 2\): 2"),
        ({"y_test": np.array([0.0, 1.0])}, "labels must be non-empty integer arrays"),
        ({"x_train": np.array([None] * 4)}, "holds Python objects"),
    ],
)
def test_import_npz_refuses_bad_arrays_naming_the_file(tmp_path, overrides, message):
    path = write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataError, match=f"bad.npz: .*{message}"):
        import_npz(path)


def test_import_npz_refuses_missing_arrays_and_corrupt_files(tmp_path):
    np.savez(tmp_path / "part.npz", x_train=pixels(1, 2))
    with pytest.raises(DataError, match="missing array.*y_train, x_test, y_test"):
        import_npz(tmp_path / "part.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="junk.npz: corrupt or truncated"):
        import_npz(tmp_path / "junk.npz")


def test_import_npz_refuses_arrays_over_max_bytes(tmp_path):
    with pytest.raises(DataError, match="too large"):
        import_npz(write_npz(tmp_path / "d.npz"), max_bytes=10_000)


# --- image folders ------------------------------------------------------------------------


def test_image_folder_directory_reads_sorted_classes_exactly(tmp_path):
    files = folder_files() | {"train/.DS_Store": b"junk", ".hidden/x.txt": b"junk"}
    ds = import_image_folder(write_tree(tmp_path / "pets", files))
    assert (ds.name, ds.source, ds.class_names) == ("pets", "image-folder", ("cat", "dog"))
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [0, 0, 1, 1]
    assert np.array_equal(ds.x_train[0], pixels(10)[0])  # cat/0.png, PNG is lossless


def test_image_folder_zip_reads_png_and_jpeg_inside_a_top_folder(tmp_path):
    ramp = np.linspace(0, 255, 32 * 32 * 3).astype(np.uint8).reshape(32, 32, 3)
    files = folder_files("pets/") | {
        "pets/train/cat/9.jpg": encode(ramp, "JPEG"),
        "__MACOSX/pets/train/cat/._9.jpg": b"resource fork",
    }
    ds = load_dataset(str(write_zip(tmp_path / "pets.zip", files)))
    assert ds.name == "pets" and ds.class_counts() == {"cat": 4, "dog": 3}
    assert np.abs(ds.x_train[3].astype(int) - ramp).mean() < 5  # lossy, but the same picture


def test_image_folder_resizes_and_converts_only_when_asked(tmp_path):
    files = folder_files() | {"train/cat/big.png": encode(pixels(5, 1, (40, 48))[0], mode="L")}
    root = write_tree(tmp_path / "t", files)
    with pytest.raises(DataError, match=r"big.png: image is 48x40 L; expected 32x32 RGB"):
        import_image_folder(root)
    ds = import_image_folder(root, resize=True)
    assert ds.x_train.shape == (7, 32, 32, 3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"train/cat/notes.txt": b"hello"}, "train/cat/notes.txt: not an image file"),
        ({"train/cat/x.jpg": b"\xff\xd8 not really"}, "train/cat/x.jpg: not a decodable image"),
        ({"train/cat/x.gif": b"GIF89a"}, "x.gif: not an image file"),
        ({"readme.md": b"hi"}, "unexpected file 'readme.md'"),
        ({"train/cat/sub/x.png": b""}, "unexpected file 'train/cat/sub/x.png'"),
        ({"train/bird/0.png": encode(pixels(3)[0])}, r"only in train: \['bird'\]"),
        ({"test/cow/0.png": encode(pixels(3)[0])}, r"only in test: \['cow'\]"),
    ],
)
def test_image_folder_refuses_bad_content_naming_the_file(tmp_path, extra, message):
    with pytest.raises(DataError, match=message):
        import_image_folder(write_tree(tmp_path / "t", folder_files() | extra))


def test_image_folder_refuses_a_wrong_layout(tmp_path):
    write_tree(tmp_path / "flat", {"cat/0.png": encode(pixels(0)[0])})
    with pytest.raises(DataError, match=r"expected train/<class>/<image>"):
        import_image_folder(tmp_path / "flat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        import_image_folder(tmp_path / "empty")


@pytest.mark.parametrize("member", ["../evil.png", "/abs.png", "train/../../evil.png"])
def test_image_folder_zip_refuses_unsafe_member_paths(tmp_path, member):
    path = write_zip(tmp_path / "evil.zip", folder_files() | {member: encode(pixels(0)[0])})
    with pytest.raises(DataError, match="evil.zip: unsafe path"):
        import_image_folder(path)


def test_image_folder_refuses_archives_over_max_bytes_before_reading(tmp_path):
    path = write_zip(tmp_path / "big.zip", folder_files())
    with pytest.raises(DataError, match="big.zip: archive is too large"):
        import_image_folder(path, max_bytes=1000)
    with pytest.raises(DataError, match="over the 1,000 limit"):
        import_image_folder(write_tree(tmp_path / "dir", folder_files()), max_bytes=1000)


def test_image_folder_zip_with_a_lying_size_header_is_refused(tmp_path):
    path = write_zip(tmp_path / "lie.zip", folder_files())
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    raw = bytearray(path.read_bytes())
    # Shrink the uncompressed size recorded in the central directory to 10 bytes.
    entry = raw.index(b"PK\x01\x02")
    raw[entry + 24 : entry + 28] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    assert info.file_size > 10
    with pytest.raises(DataError, match="lie.zip: '.*' inflates to more than its declared 10"):
        import_image_folder(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_image_folder_refuses_corrupt_zips(tmp_path, damage):
    path = write_zip(tmp_path / "bad.zip", folder_files())
    data = path.read_bytes()
    path.write_bytes(b"PK\x03\x04 garbage" * 20 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DataError, match="bad.zip: corrupt or truncated zip"):
        load_dataset(str(path))


@pytest.mark.skipif(not SUBSET_ZIP.is_file(), reason=f"shared data absent: {SUBSET_ZIP}")
def test_image_folder_imports_the_shared_cifar10_jpeg_subset():
    """How fast (about a second here): bench/import_speed.py."""
    ds = import_image_folder(SUBSET_ZIP)
    assert ds.class_names == CIFAR_NAMES
    assert ds.x_train.shape == (10_000, 32, 32, 3) and ds.x_test.shape == (2_000, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and set(ds.class_counts("test").values()) == {200}


# --- CIFAR-10 archives --------------------------------------------------------------------


class Py2Pickler(pickle._Pickler):
    """Pickles text as Python 2's cPickle did (8-bit strings), like the official batches."""

    def save_bytes(self, obj: bytes) -> None:
        """Write bytes as SHORT_BINSTRING/BINSTRING rather than via _codecs.encode."""
        head = bytes([len(obj)]) if len(obj) < 256 else struct.pack("<i", len(obj))
        self.write((pickle.SHORT_BINSTRING if len(obj) < 256 else pickle.BINSTRING) + head + obj)

    def save_str(self, obj: str) -> None:
        """Python 2 str was bytes."""
        self.save_bytes(obj.encode("latin1"))

    dispatch = pickle._Pickler.dispatch | {bytes: save_bytes, str: save_str}


def dumps(obj: object, protocol: int | str) -> bytes:
    """Pickle obj with a Python 3 protocol, or 'py2' for the official archive's format."""
    if protocol != "py2":
        return pickle.dumps(obj, protocol=protocol)
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def cifar_batch(seed: int, n: int, protocol: int | str = "py2") -> bytes:
    """A pickled batch in the official layout: bytes keys, (n, 3072) uint8 CHW rows."""
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"fake batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return dumps(batch, protocol)


def cifar_files(protocol: int | str = "py2") -> dict[str, bytes]:
    """Tiny fake cifar-10-batches-py files: 5 train batches of 3 rows and a test batch of 4."""
    files = {f"data_batch_{i}": cifar_batch(i, 3, protocol) for i in range(1, 6)}
    meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    files |= {"test_batch": cifar_batch(9, 4, protocol), "batches.meta": dumps(meta, protocol)}
    return files | {"readme.html": b"<html></html>"}


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    """A tar archive of {member name: bytes}."""
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def cifar_tar(tmp_path: Path, protocol: int | str = "py2", **extra: bytes) -> Path:
    """A cifar-10-python.tar.gz holding cifar-10-batches-py/ with the fake batches."""
    files = {f"cifar-10-batches-py/{k}": v for k, v in cifar_files(protocol).items()}
    return write_tar(tmp_path / "cifar-10-python.tar.gz", files | extra)


def assert_fake_cifar(ds) -> None:
    """The fake batches were read in order, with CHW rows turned into HWC images."""
    rows = pickle.loads(cifar_files()["data_batch_1"], encoding="bytes")[b"data"]
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    assert ds.class_names == CIFAR_NAMES and ds.name == "cifar10"
    assert ds.x_train[1, 5, 7, 2] == rows[1, 2 * 1024 + 5 * 32 + 7]
    test_labels = pickle.loads(cifar_files()["test_batch"], encoding="bytes")[b"labels"]
    assert ds.y_test.tolist() == test_labels


@pytest.mark.parametrize("protocol", ["py2", 2, 5])
def test_cifar_tar_gz_is_read_in_memory(tmp_path, protocol):
    ds = load_dataset(str(cifar_tar(tmp_path, protocol)))
    assert_fake_cifar(ds)
    assert ds.source == "cifar10-archive"
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-python.tar.gz"]  # no extraction


def test_cifar_extracted_folder_is_read_from_itself_or_its_parent(tmp_path):
    folder = write_tree(tmp_path / "cifar-10-batches-py", cifar_files())
    assert_fake_cifar(import_cifar_archive(folder))
    assert load_dataset(str(tmp_path)).fingerprint() == import_cifar_archive(folder).fingerprint()


def test_cifar_archive_refuses_a_truncated_tar_gz(tmp_path):
    path = cifar_tar(tmp_path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: corrupt or truncated tar"):
        import_cifar_archive(path)


def test_cifar_archive_refuses_missing_batches(tmp_path):
    path = write_tar(tmp_path / "c.tar", {"cifar-10-batches-py/batches.meta": b"x"}, "w")
    with pytest.raises(DataError, match="missing data_batch_1, .*test_batch"):
        import_cifar_archive(path)


def test_cifar_archive_refuses_unsafe_members_and_oversize(tmp_path):
    with pytest.raises(DataError, match="unsafe path '../evil'"):
        import_cifar_archive(cifar_tar(tmp_path, **{"../evil": b"x"}))
    with pytest.raises(DataError, match="archive is too large"):
        import_cifar_archive(cifar_tar(tmp_path), max_bytes=20_000)


def test_cifar_archive_refuses_a_pickle_with_a_disallowed_global(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    files = cifar_files() | {"test_batch": pickle.dumps({b"data": Exploit()})}
    with pytest.raises(DataError, match=r"test_batch: unsafe or invalid pickle: refused global"):
        import_cifar_archive(write_tree(tmp_path / "cifar-10-batches-py", files))
    assert not marker.exists()


def test_cifar_archive_refuses_batches_with_the_wrong_shape(tmp_path):
    bad = pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    files = cifar_files() | {"data_batch_3": bad}
    with pytest.raises(DataError, match="data_batch_3 rows have 100 bytes, expected 3072"):
        import_cifar_archive(write_tree(tmp_path / "cifar-10-batches-py", files))


# --- Keras download -----------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Keras cache, and keras itself unimportable so the test fails if it is reached."""
    monkeypatch.setattr(importers, "_keras_cache_dirs", lambda: [tmp_path])
    monkeypatch.setitem(sys.modules, "keras", None)


def test_cifar10_download_fails_fast_when_connections_are_refused(offline, monkeypatch):
    tries = []

    def refuse(*args, **kwargs):
        tries.append(args)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(DataError, match="no internet") as info:
        load_cifar10_keras()
    assert len(tries) == 1  # one probe, no retries; Keras (unimportable here) never reached
    assert "stacklab data import cifar-10-python.tar.gz" in str(info.value)


def test_cifar10_download_fails_fast_when_the_network_hangs(offline, monkeypatch):
    hanging, release, hung_out = threading.Event(), threading.Event(), threading.Event()

    def hang(*args, **kwargs):
        hanging.set()
        if not release.wait(600):  # hangs until this test lets it go
            hung_out.set()
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    try:
        with pytest.raises(DataError, match="no internet"):
            load_dataset("cifar10")
        # It gave up on its own, while the connection still hung.
        assert hanging.is_set() and not hung_out.is_set()
    finally:
        release.set()  # let the abandoned probe thread finish


def test_cifar10_from_the_keras_cache_skips_the_network_probe(monkeypatch, tmp_path):
    (tmp_path / "cifar-10-batches-py-target_archive").write_bytes(b"cached")
    monkeypatch.setattr(importers, "_keras_cache_dirs", lambda: [tmp_path])
    monkeypatch.setattr(importers, "_can_reach", lambda *a, **k: pytest.fail("probed"))
    arrays = (
        (pixels(1, 3), np.array([[1], [2], [3]], np.uint8)),
        (pixels(2, 2), np.ones((2, 1), np.uint8)),
    )
    cifar10 = SimpleNamespace(load_data=lambda: arrays)
    monkeypatch.setitem(
        sys.modules, "keras", SimpleNamespace(datasets=SimpleNamespace(cifar10=cifar10))
    )
    ds = load_cifar10_keras()
    assert (ds.name, ds.source, ds.class_names) == ("cifar10", "cifar10", CIFAR_NAMES)
    assert ds.y_train.tolist() == [1, 2, 3] and ds.y_test.dtype == np.int64
