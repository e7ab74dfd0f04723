"""NumPy .npz files: any with x_train, y_train, x_test, y_test, and the ones stacklab saves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worker.ml.datasets.archive_safety import check_class_count, read_npz
from worker.ml.datasets.dataset import (
    NPZ_KEYS,
    SAVED_KEYS,
    DataError,
    Dataset,
    dataset_from_arrays,
)
from worker.ml.datasets.limits import DEFAULT_LIMITS, ImportLimits, with_max_bytes


def load_saved(path: str | Path) -> Dataset:
    """Read a dataset written by Dataset.save()."""
    arrays = read_npz(Path(path), SAVED_KEYS)
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
        check_class_count(str(path), arrays["class_names"].size, limits)
    else:
        arrays["class_names"] = _default_class_names(path, arrays, limits)
    # Our own saved files carry their name and source; plain ones are named after the file.
    name = str(arrays["name"]) if "name" in arrays else path.stem
    source = str(arrays["source"]) if "source" in arrays else "npz"
    return dataset_from_arrays(path, arrays, name=name, source=source)


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
