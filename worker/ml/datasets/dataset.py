"""The Dataset type: validated image arrays plus the generic operations training needs.

A leaf: it imports none of the readers (npz, image folder, CIFAR, demo), which all build
a Dataset; `worker.ml.datasets.load` picks the reader for a spec."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worker.ml.atomic import atomic_write

IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "test")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
SAVED_KEYS = (*NPZ_KEYS, "class_names", "name", "source")


class DataError(ValueError):
    """Bad data: message names the file and the problem."""


_OBJECT_REPR = re.compile(r"<[^<>]{0,200}? object at 0x[0-9a-fA-F]+>")


def reason(exc: BaseException, limit: int = 300, *, typed: bool = True) -> str:
    """What a library's error says, fit for a DataError: its type when it says nothing, no
    `<_io.BytesIO object at 0x...>` reprs (they mean nothing to the person who uploaded
    the file), no characters that cannot be encoded, cut short."""
    said = _OBJECT_REPR.sub("the data", str(exc)).encode("utf-8", "backslashreplace").decode()
    said = said if len(said) <= limit else f"{said[: limit - 3]}..."
    if not said or not typed:
        return said or type(exc).__name__
    return f"{type(exc).__name__}: {said}"


@dataclass(frozen=True, eq=False)
class Split:
    """A stratified train/validation split of a dataset's training images.

    `val_indices` index the data set's training images, in the order of x_val. The
    fingerprint names the split itself (data set, fraction, which images validate), so two
    runs can tell whether they validated on the same images whatever seed made the split.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    val_indices: np.ndarray
    seed: int
    fraction: float
    fingerprint: str

    def record(self) -> dict[str, Any]:
        """What a run's result and manifest keep of its split (JSON-able)."""
        return {
            "seed": self.seed,
            "fraction": self.fraction,
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "fingerprint": self.fingerprint,
        }


def split_fingerprint(dataset_fingerprint: str, fraction: float, val_indices: np.ndarray) -> str:
    """First 16 hex digits of SHA-256 over the data set, the fraction and the sorted
    validation indices: equal exactly when two splits validate on the same images."""
    digest = hashlib.sha256(f"{dataset_fingerprint};{float(fraction)!r};".encode())
    digest.update(np.sort(np.asarray(val_indices, dtype=np.int64)).astype("<i8").tobytes())
    return digest.hexdigest()[:16]


def _check_images(key: str, x: Any) -> np.ndarray:
    """Return x as a read-only view after checking it is a non-empty uint8 (N, 32, 32, 3) array."""
    if not isinstance(x, np.ndarray):
        raise DataError(f"{key} must be a NumPy array, got {type(x).__name__}")
    if x.dtype != np.uint8:
        raise DataError(
            f"{key} has dtype {x.dtype}; expected uint8 pixels 0-255 "
            "(convert floats in [0, 1] with (x * 255).round().astype('uint8'))"
        )
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        hint = " (channels-first? transpose to (N, 32, 32, 3))" if x.shape[1:2] == (3,) else ""
        raise DataError(f"{key} has shape {x.shape}; expected (N, 32, 32, 3){hint}")
    if len(x) == 0:
        raise DataError(f"{key} is empty; need at least one image")
    return _read_only(x)


def _check_labels(key: str, y: Any, n_images: int, num_classes: int) -> np.ndarray:
    """Return y as read-only int64 after checking shape, dtype and range."""
    if not isinstance(y, np.ndarray):
        raise DataError(f"{key} must be a NumPy array, got {type(y).__name__}")
    if y.ndim != 1 or len(y) != n_images:
        raise DataError(f"{key} has shape {y.shape}; expected ({n_images},), one label per image")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{key} has dtype {y.dtype}; expected integer class indices")
    bad = np.unique(y[(y < 0) | (y >= num_classes)])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5])
        raise DataError(f"{key} has labels outside [0, {num_classes}): {shown}")
    return _read_only(y.astype(np.int64, copy=False))


def _check_class_names(names: Any) -> tuple[str, ...]:
    """Return class names as a tuple after checking they are unique non-empty strings."""
    if not isinstance(names, tuple | list):  # a bare string would split into letters
        raise DataError(f"class_names must be a tuple or list of strings, got {names!r}")
    names = tuple(names)
    if not names:
        raise DataError("class_names is empty; need at least one class")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise DataError(f"class_names must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"class_names has duplicates: {dupes}")
    return names


def _read_only(a: np.ndarray) -> np.ndarray:
    """Return a read-only view, so the cached fingerprint cannot go stale through mutation."""
    view = a.view()
    view.flags.writeable = False
    return view


def _stratified_sample(
    y: np.ndarray, n: int, num_classes: int, seed: int, floor: int = 0
) -> np.ndarray:
    """Pick n indices whose class proportions match y's (largest-remainder rounding).

    `floor` images of every class (all of a smaller one) are kept first, so a quick run's
    subset can still be split stratified; the rest are shared out in proportion."""
    counts = np.bincount(y, minlength=num_classes)
    reserved = np.minimum(counts, floor)
    room = counts - reserved
    left = n - int(reserved.sum())
    if left < 0:
        raise DataError(f"cannot keep {floor} images of each class in a sample of {n}")
    quotas = room * left / max(int(room.sum()), 1)
    take = np.floor(quotas).astype(np.int64)
    # Hand the rounding leftovers to the classes that lost the most, so the total is exactly n.
    order = np.argsort(-(quotas - take), kind="stable")
    take[order[: left - take.sum()]] += 1
    take += reserved
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), k, replace=False) for c, k in enumerate(take)]
    return np.sort(np.concatenate(picks))


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test images (uint8, N x 32 x 32 x 3) with integer labels and class names."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        """Validate every field; normalise labels to int64 and arrays to read-only views."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise DataError(f"dataset name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise DataError(f"dataset source must be a non-empty string, got {self.source!r}")
        names = _check_class_names(self.class_names)
        checked: dict[str, object] = {"class_names": names}
        for split in SPLITS:
            x = _check_images(f"x_{split}", getattr(self, f"x_{split}"))
            y = _check_labels(f"y_{split}", getattr(self, f"y_{split}"), len(x), len(names))
            checked |= {f"x_{split}": x, f"y_{split}": y}
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    @property
    def num_classes(self) -> int:
        """Number of classes (including any with no images)."""
        return len(self.class_names)

    def _labels(self, split: str) -> np.ndarray:
        """Labels of the named split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.y_train if split == "train" else self.y_test

    def class_counts(self, split: str = "train") -> dict[str, int]:
        """Images per class name in a split; every class is listed, 0 included."""
        counts = np.bincount(self._labels(split), minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}

    def fingerprint(self) -> str:
        """SHA-256 of the content (arrays and class names); name and source are left out."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for key in NPZ_KEYS:
                a = getattr(self, key)
                digest.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
                digest.update(np.ascontiguousarray(a).data)
            digest.update("\x00".join(self.class_names).encode())
            fingerprint = digest.hexdigest()
            object.__setattr__(self, "_fingerprint", fingerprint)  # frozen: cached once
            return fingerprint
        return self._fingerprint

    def split_validation(
        self, *, fraction: float = 0.1, seed: int = 0, max_images: int | None = None
    ) -> Split:
        """Stratified split of the training images into train and validation parts.

        With `max_images` below the number of training images, only a stratified sample of
        that many is split (a quick run); indices still count the whole data set's images."""
        # sklearn is imported here, not at the top, so loading data stays fast.
        from sklearn.model_selection import train_test_split

        if not 0.0 < fraction < 1.0:
            raise DataError(f"validation fraction must be in (0, 1), got {fraction}")
        pool = self.sample_train(max_images, seed=seed)
        labels = self.y_train[pool]
        counts = np.bincount(labels, minlength=self.num_classes)
        lonely = [n for n, c in zip(self.class_names, counts, strict=True) if c == 1]
        if lonely:
            raise DataError(
                f"{self.name}: cannot stratify a validation split, class {lonely[0]!r} "
                "has only 1 training image (need at least 2)"
            )
        try:
            train_idx, val_idx = train_test_split(
                pool, test_size=fraction, stratify=labels, random_state=seed
            )
        except ValueError as exc:
            raise DataError(f"{self.name}: cannot split off {fraction:.0%}: {exc}") from exc
        return Split(
            x_train=self.x_train[train_idx],
            y_train=self.y_train[train_idx],
            x_val=self.x_train[val_idx],
            y_val=self.y_train[val_idx],
            val_indices=_read_only(val_idx.astype(np.int64, copy=False)),
            seed=seed,
            fraction=fraction,
            fingerprint=split_fingerprint(self.fingerprint(), fraction, val_idx),
        )

    def sample_train(self, n: int | None, *, seed: int = 0) -> np.ndarray:
        """Indices of a stratified sample of n training images, drawn by `subset`'s sampler
        but keeping 2 of each class (so the sample can be split); every index when n is
        None or not below the count."""
        total = len(self.y_train)
        if n is None or n >= total:
            return np.arange(total)
        if n < 1:
            raise DataError(f"max train images must be at least 1, got {n}")
        return _stratified_sample(self.y_train, n, self.num_classes, seed, floor=2)

    def class_weights(self) -> dict[int, float]:
        """'Balanced' class weights over the training labels; absent classes get 1.0."""
        from sklearn.utils.class_weight import compute_class_weight  # deferred, as above

        present = np.unique(self.y_train)
        weights = compute_class_weight("balanced", classes=present, y=self.y_train)
        result = dict.fromkeys(range(self.num_classes), 1.0)
        result.update({int(c): float(w) for c, w in zip(present, weights, strict=True)})
        return result

    def subset(
        self, *, n_train: int | None = None, n_test: int | None = None, seed: int = 0
    ) -> Dataset:
        """A stratified subsample (class proportions kept) for quick runs; None keeps a split."""
        parts: dict[str, np.ndarray] = {}
        for split, n in (("train", n_train), ("test", n_test)):
            x, y = getattr(self, f"x_{split}"), self._labels(split)
            if n is None or n == len(y):
                parts |= {f"x_{split}": x, f"y_{split}": y}
                continue
            if not 1 <= n <= len(y):
                raise DataError(f"n_{split} must be in [1, {len(y)}], got {n}")
            idx = _stratified_sample(y, n, self.num_classes, seed)
            parts |= {f"x_{split}": x[idx], f"y_{split}": y[idx]}
        return Dataset(
            name=f"{self.name}-subset", class_names=self.class_names, source=self.source, **parts
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-able description: sizes, shape, class names and per-class counts."""
        return {
            "name": self.name,
            "source": self.source,
            "fingerprint": self.fingerprint(),
            "n_train": len(self.y_train),
            "n_test": len(self.y_test),
            "image_shape": list(IMAGE_SHAPE),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "train_counts": self.class_counts("train"),
            "test_counts": self.class_counts("test"),
        }

    def save(self, path: str | Path) -> Path:
        """Write an .npz atomically: a temp file in the same folder, then os.replace. Read it
        back with worker.ml.datasets.npz.load_saved (the bounded npz reader)."""
        path = Path(path)
        with atomic_write(path) as fh:
            np.savez(
                fh,
                **{key: getattr(self, key) for key in NPZ_KEYS},
                class_names=np.array(self.class_names, dtype=str),
                name=np.array(self.name),
                source=np.array(self.source),
            )
        return path


def _text_of(value: object, key: str) -> str:
    """str of a value read from an array; bytes must be UTF-8 (never a raw decode error)."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise DataError(f"{key} holds bytes that are not UTF-8 text") from None
    return str(value)


def dataset_from_arrays(
    path: str | Path, arrays: dict[str, np.ndarray], *, name: str, source: str
) -> Dataset:
    """Build a Dataset from npz-style arrays, prefixing any validation error with the file."""
    try:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"class_names must be a 1-D array of strings, got {names.dtype}")
        return Dataset(
            name=name,
            class_names=tuple(_text_of(n, "class_names") for n in names.tolist()),
            source=source,
            **{key: arrays[key] for key in NPZ_KEYS},
        )
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
