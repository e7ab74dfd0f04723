"""CIFAR-10 in its python form: the official tar.gz, its extracted batches folder, or
keras.datasets' download."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from worker.ml.datasets.archive_safety import (
    IMAGE_BYTES,
    Parts,
    check_class_count,
    check_class_names,
    check_output,
    read_tar_files,
)
from worker.ml.datasets.dataset import DataError, Dataset
from worker.ml.datasets.limits import DEFAULT_LIMITS, ImportLimits, with_max_bytes
from worker.ml.datasets.pickle_safety import safe_unpickle

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = (*CIFAR_TRAIN_BATCHES, "test_batch", "batches.meta")
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_HOST = ("www.cs.toronto.edu", 443)
# The official archive holds 9 entries; far fewer than a hostile tar of empty members.
CIFAR_MAX_MEMBERS = 1000
PROBE_TIMEOUT_S = 3.0


def is_cifar_batches_dir(path: Path) -> bool:
    """True for an extracted cifar-10-batches-py/ folder or a folder that contains one."""
    return (path / "batches.meta").is_file() or (path / CIFAR_DIR / "batches.meta").is_file()


def import_cifar_archive(
    path: str | Path, *, limits: ImportLimits = DEFAULT_LIMITS, max_bytes: int | None = None
) -> Dataset:
    """Read the official cifar-10-python.tar.gz, or its extracted cifar-10-batches-py/ folder."""
    path = Path(path)
    limits = with_max_bytes(limits, max_bytes)
    if path.is_dir():
        files = _cifar_dir_files(path, limits.max_bytes)
    elif path.is_file():
        files = _cifar_tar_files(path, limits)
    else:
        raise DataError(f"{path}: file not found")
    names = _cifar_label_names(path, files.pop("batches.meta"), limits)
    # Popped as each is decoded, so a pickle's bytes are freed once its rows exist; the rows
    # are then copied into the images batch by batch, each batch freed once copied: the
    # images are never held twice over (rows, then a transposed copy, then a concatenation).
    rows: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for member in (*CIFAR_TRAIN_BATCHES, "test_batch"):
        x, y = _cifar_batch(path, member, files.pop(member), limits, sum(len(r) for r in rows))
        rows.append(x)
        labels.append(y)
    test_rows = rows.pop()
    try:
        return Dataset(
            name="cifar10",
            x_train=_images(rows),
            y_train=np.concatenate(labels[:-1]),
            x_test=_images([test_rows]),
            y_test=labels[-1],
            class_names=names,
            source="cifar10-archive",
        )
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc


def _require_cifar_files(path: Path, found: set[str]) -> None:
    """Refuse an archive or folder that lacks any of the CIFAR-10 batch files."""
    missing = [f for f in CIFAR_FILES if f not in found]
    if missing:
        raise DataError(
            f"{path}: not a CIFAR-10 python archive, missing {', '.join(missing)} "
            f"(expected {CIFAR_DIR}/ with {', '.join(CIFAR_FILES)})"
        )


def _cifar_tar_files(path: Path, limits: ImportLimits) -> dict[str, bytes]:
    """The batch files of a CIFAR tar, at its top level or one folder down."""

    def wanted(parts: Parts) -> bool:
        return len(parts) <= 2 and parts[-1] in CIFAR_FILES

    limits = replace(limits, max_members=min(limits.max_members, CIFAR_MAX_MEMBERS))
    found: dict[str, bytes] = {}
    # A batch's pickle holds its images' bytes and a few per label and file name (the
    # official ones 3,103 bytes an image): more than this never decodes within the budget.
    most = limits.max_decoded_bytes + limits.max_decoded_bytes // 8
    for parts, data in read_tar_files(path, wanted, limits, most).items():
        if parts[-1] in found:
            raise DataError(f"{path}: {parts[-1]} appears more than once in the archive")
        found[parts[-1]] = data
    _require_cifar_files(path, set(found))
    return found


def _cifar_dir_files(path: Path, max_bytes: int) -> dict[str, bytes]:
    """The batch files of an extracted cifar-10-batches-py/ folder, size-checked first."""
    folder = path if (path / "batches.meta").is_file() else path / CIFAR_DIR
    _require_cifar_files(path, {f for f in CIFAR_FILES if (folder / f).is_file()})
    total = sum((folder / f).stat().st_size for f in CIFAR_FILES)
    if total > max_bytes:
        raise DataError(f"{path}: batch files total {total:,} bytes, over the {max_bytes:,} limit")
    return {f: (folder / f).read_bytes() for f in CIFAR_FILES}


def _field(path: Path, member: str, obj: object, key: str) -> object:
    """A field of an unpickled CIFAR dict, whose keys are bytes (or str in re-pickled copies)."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {member} is a {type(obj).__name__}, expected a dict")
    for k in (key.encode(), key):
        if k in obj:
            return obj[k]
    raise DataError(f"{path}: {member} has no {key!r} entry")


def _cifar_label_names(path: Path, data: bytes, limits: ImportLimits) -> tuple[str, ...]:
    """Class names from batches.meta."""
    meta = safe_unpickle(data, f"{path}: batches.meta", limits)
    names = _field(path, "batches.meta", meta, "label_names")
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise DataError(f"{path}: batches.meta label_names must be a list of strings")
    check_class_count(f"{path}: batches.meta", len(names), limits)
    label = f"{path}: batches.meta label_names"
    decoded = []
    for i, name in enumerate(names):
        try:
            decoded.append(name.decode() if isinstance(name, bytes) else name)
        except UnicodeDecodeError:
            raise DataError(f"{label} (class {i}): not UTF-8 text") from None
    return check_class_names(label, decoded, limits)


def _cifar_batch(
    path: Path, member: str, data: bytes, limits: ImportLimits, before: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (N, 3072: channels, then rows, then columns) and labels (N,) from one pickled
    batch; `before` images came in earlier batches (the output budgets count them all)."""
    batch = safe_unpickle(data, f"{path}: {member}", limits)
    pixels = _field(path, member, batch, "data")
    if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 2):
        raise DataError(f"{path}: {member} data must be a 2-D uint8 array")
    if pixels.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: {member} rows have {pixels.shape[1]} bytes, expected 3072")
    total = before + len(pixels)  # checked before the labels and the transposed copy
    check_output(f"{path}: {member}", total, total * IMAGE_BYTES, limits)
    labels = _cifar_labels(path, member, _field(path, member, batch, "labels"), len(pixels))
    return pixels, labels


def _images(batches: list[np.ndarray]) -> np.ndarray:
    """Images (N, 32, 32, 3) from batches of 3072-byte CHW rows, emptying the list: each
    batch is freed as soon as it is copied."""
    images = np.empty((sum(map(len, batches)), 32, 32, 3), np.uint8)
    at = 0
    while batches:
        rows = batches.pop(0)
        images[at : at + len(rows)] = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        at += len(rows)
        del rows
    return images


def _cifar_labels(path: Path, member: str, labels: object, rows: int) -> np.ndarray:
    """Labels as int64, checked to be flat before NumPy sees them: shared nested lists in a
    few KB of pickle would expand to gigabytes in np.asarray."""
    flat = (
        isinstance(labels, np.ndarray)
        and labels.ndim == 1
        and np.issubdtype(labels.dtype, np.integer)
    ) or (isinstance(labels, list) and all(type(v) is int for v in labels))
    if not flat or not isinstance(labels, np.ndarray | list) or len(labels) != rows:
        raise DataError(f"{path}: {member} labels must be a flat list of {rows} integers")
    try:
        return np.asarray(labels, dtype=np.int64)
    except OverflowError as exc:
        raise DataError(f"{path}: {member} has a label too large for int64") from exc


def _keras_cache_dirs() -> list[Path]:
    """Where keras.utils.get_file may have cached datasets (it falls back to /tmp/.keras)."""
    homes = [os.environ.get("KERAS_HOME"), Path.home() / ".keras", Path("/tmp/.keras")]
    return [Path(h) / "datasets" for h in homes if h]


def _keras_cifar_cached() -> bool:
    """True when Keras already holds the CIFAR-10 download, so no network is needed."""
    return any(any(d.glob("cifar-10-batches-py*")) for d in _keras_cache_dirs() if d.is_dir())


def _can_reach(host: str, port: int, timeout: float) -> bool:
    """True if a TCP connection opens within timeout, DNS lookup included."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    # The socket timeout does not bound name resolution, so the probe runs in a thread.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result) and result[0]


def _offline_message(reason: str) -> str:
    """How to get CIFAR-10 onto a machine that cannot download it."""
    return (
        f"cifar10: cannot download CIFAR-10: {reason}. On a machine with internet, download "
        f"{CIFAR_URL} and import the file here with `stacklab data import cifar-10-python.tar.gz` "
        f"(an extracted {CIFAR_DIR}/ folder or an image-folder .zip work too)"
    )


def load_cifar10_keras() -> Dataset:
    """CIFAR-10 through keras.datasets (downloads once); fails fast when offline."""
    if not _keras_cifar_cached() and not _can_reach(*CIFAR_HOST, timeout=PROBE_TIMEOUT_S):
        raise DataError(
            _offline_message(
                f"no internet connection ({CIFAR_HOST[0]} not reachable within "
                f"{PROBE_TIMEOUT_S:g} s) and no copy in the Keras cache"
            )
        )
    # Deferred, not a cycle: Keras brings TensorFlow, seconds of start-up that only
    # this download needs.
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as exc:  # download and extraction failures come in many types
        raise DataError(_offline_message(f"download failed ({exc})")) from exc
    return Dataset(
        name="cifar10",
        x_train=x_train,
        y_train=y_train.reshape(-1),
        x_test=x_test,
        y_test=y_test.reshape(-1),
        class_names=CIFAR10_CLASSES,
        source="cifar10",
    )
