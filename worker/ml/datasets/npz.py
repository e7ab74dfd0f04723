"""NumPy .npz files: any with x_train, y_train, x_test, y_test, and the ones stacklab saves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from jobspec import text
from worker.ml.datasets.archive_safety import (
    TEXT_ARRAYS,
    check_class_count,
    check_class_names,
    read_npz,
    read_npz_headers,
)
from worker.ml.datasets.dataset import (
    IMAGE_SHAPE,
    NPZ_KEYS,
    SAVED_KEYS,
    DataError,
    Dataset,
    dataset_from_arrays,
)
from worker.ml.datasets.limits import DEFAULT_LIMITS, ImportLimits, with_max_bytes

# Our own files (written by the budgeted import child, sha256-checked when fetched): the
# import's output budgets were applied when the data set was made, with this deployment's
# settings, so reading it back for training must not refuse it under the defaults.
SAVED_LIMITS = replace(DEFAULT_LIMITS, max_images=2**62, max_decoded_bytes=2**62)
# What a data set's source may be: the store keeps 40 characters.
SOURCE = TEXT_ARRAYS["source"][1]


def load_saved(path: str | Path) -> Dataset:
    """Read a dataset written by Dataset.save()."""
    arrays = read_npz(Path(path), SAVED_KEYS, SAVED_LIMITS, check_text=False)
    missing = [k for k in SAVED_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: not a stacklab dataset file, missing {', '.join(missing)}")
    return dataset_from_arrays(path, arrays, name=str(arrays["name"]), source=str(arrays["source"]))


def import_npz(
    path: str | Path, *, limits: ImportLimits = DEFAULT_LIMITS, max_bytes: int | None = None
) -> Dataset:
    """Read x_train, y_train, x_test, y_test (+ optional class_names) from an .npz file."""
    path = Path(path)
    limits = with_max_bytes(limits, max_bytes)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    arrays = read_npz(path, SAVED_KEYS, limits)
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing array(s) {', '.join(missing)}; "
            f"expected {', '.join(NPZ_KEYS)} (+ optional class_names)"
        )
    for key in ("y_train", "y_test"):
        # Keras-style labels come as (N, 1); anything else keeps its shape and is refused later.
        if arrays[key].ndim == 2 and arrays[key].shape[1] == 1:
            arrays[key] = arrays[key].reshape(-1)
    if "class_names" in arrays:
        names = _class_names(path, arrays["class_names"], limits)
        arrays["class_names"] = np.array(names, dtype=str)
    else:
        arrays["class_names"] = _default_class_names(path, arrays, limits)
    # Our own saved files carry their name and source; plain ones are named after the file.
    name = _text(path, arrays, "name", text.DATASET_NAME) or path.stem
    source = _text(path, arrays, "source", SOURCE) or "npz"
    return dataset_from_arrays(path, arrays, name=name, source=source)


def _decoded(path: Path, key: str, value: object) -> str:
    """A string from an npz: str arrays give str, bytes arrays must hold UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise DataError(f"{path}: {key} is not UTF-8 text") from None
    return str(value)


def _class_names(path: Path, names: np.ndarray, limits: ImportLimits) -> tuple[str, ...]:
    """The class_names array: 1-D strings, each a valid class name (checked before a page
    ever lists them: 1,000 names of 60,000 characters made one answer 240 MB)."""
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(
            f"{path}: class_names must be a 1-D array of strings, got {names.dtype} of shape "
            f"{names.shape}"
        )
    check_class_count(str(path), names.size, limits)  # before decoding any of them
    label = f"{path}: class_names"
    decoded = [_decoded(path, f"class_names (class {i})", n) for i, n in enumerate(names.tolist())]
    return check_class_names(label, decoded, limits)


def _text(path: Path, arrays: dict[str, np.ndarray], key: str, rule: text.Rule) -> str | None:
    """The name or source a stacklab-saved file carries (a 0-d string array), checked."""
    if key not in arrays:
        return None
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind not in "US":
        raise DataError(f"{path}: {key} must be a single string, got {value.dtype} {value.shape}")
    try:
        return text.check(_decoded(path, key, value.item()), rule)
    except text.TextError as exc:
        raise DataError(f"{path}: {exc}") from None


def _default_class_names(
    path: Path, arrays: dict[str, np.ndarray], limits: ImportLimits
) -> np.ndarray:
    """Class names '0'..'K-1' where K is one more than the largest label."""
    labels = [arrays["y_train"], arrays["y_test"]]
    if not all(np.issubdtype(y.dtype, np.integer) and y.size for y in labels):
        dtypes = ", ".join(str(y.dtype) for y in labels)
        raise DataError(f"{path}: labels must be non-empty integer arrays, got dtypes {dtypes}")
    top = max(int(y.max()) for y in labels)
    # Checked before the names are built: one label of 2**40 would ask for 10**12 of them.
    if top >= limits.max_classes:
        raise DataError(
            f"{path}: labels go up to {top:,}, more than the {limits.max_classes:,} classes "
            "allowed (max_classes); labels must be class indices 0..K-1"
        )
    return np.array([str(i) for i in range(max(top, 0) + 1)])


def check_saved(path: Path, summary: object) -> dict[str, Any]:
    """The summary an import's child wrote beside the file it saved, after checking it is
    well formed (counts, class names as jobspec.text allows them) and agrees with the
    file's array headers. Reads only the headers: the worker that calls this has no memory
    budget, and the arrays may be hundreds of MB."""
    if not isinstance(summary, dict):
        raise DataError("no data set summary")
    names = summary.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError("class_names must be a list of strings")
    check_class_names("class_names", names, replace(SAVED_LIMITS, max_classes=len(names) or 1))
    counts = {}
    for split in ("train", "test"):
        n, per_class = summary.get(f"n_{split}"), summary.get(f"{split}_counts")
        if not (isinstance(n, int) and isinstance(per_class, dict)):
            raise DataError(f"n_{split} and {split}_counts are missing")
        if not all(type(c) is int and c >= 0 for c in per_class.values()):
            raise DataError(f"{split}_counts must be counts")
        if list(per_class) != names or sum(per_class.values()) != n:
            raise DataError(f"{split}_counts do not match class_names and n_{split}")
        counts[split] = n
    if summary.get("num_classes") != len(names) or summary.get("image_shape") != [*IMAGE_SHAPE]:
        raise DataError("num_classes or image_shape do not match")
    fingerprint, source = summary.get("fingerprint"), summary.get("source")
    if not (isinstance(fingerprint, str) and len(fingerprint) == 64 and isinstance(source, str)):
        raise DataError("fingerprint or source are missing")
    try:
        text.check(source, SOURCE)
    except text.TextError as exc:
        raise DataError(str(exc)) from None
    expected: dict[str, tuple[tuple[int, ...], str]] = {"class_names": ((len(names),), "US")}
    for split, n in counts.items():
        expected |= {f"x_{split}": ((n, *IMAGE_SHAPE), "u"), f"y_{split}": ((n,), "iu")}
    found = read_npz_headers(path, tuple(expected), SAVED_LIMITS)
    for key, (shape, kinds) in expected.items():
        if key not in found or found[key][0] != shape or found[key][1].kind not in kinds:
            raise DataError(f"{key} does not have the shape {shape} the summary says")
    return summary
