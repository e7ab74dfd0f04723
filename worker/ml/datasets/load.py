"""Load a dataset by spec: a built-in name or a path, handed to the reader for its format."""

from __future__ import annotations

from pathlib import Path

from worker.ml.datasets import cifar, demo, image_folder, npz
from worker.ml.datasets.dataset import DataError, Dataset
from worker.ml.datasets.limits import DEFAULT_LIMITS, ImportLimits

ACCEPTED_SPECS = (
    "'demo', 'demo-imbalanced', 'cifar10', or a path to: a .npz file "
    "(x_train, y_train, x_test, y_test), an image folder (directory or .zip with "
    "train/<class>/ and test/<class>/), cifar-10-python.tar.gz (.tgz/.tar) or an "
    "extracted cifar-10-batches-py/ directory"
)


def load_dataset(
    spec: str, *, resize: bool = False, seed: int = 0, limits: ImportLimits = DEFAULT_LIMITS
) -> Dataset:
    """Load a dataset by name ('demo', 'demo-imbalanced', 'cifar10') or from a file/folder;
    files are read within limits (sizes, counts, pixels, classes)."""
    if spec == "demo":
        return demo.make_demo(seed=seed)
    if spec == "demo-imbalanced":
        return demo.make_demo(seed=seed, imbalance=0.1)
    if spec == "cifar10":
        return cifar.load_cifar10_keras()
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"{spec}: no such dataset or file; accepted: {ACCEPTED_SPECS}")
    if path.is_dir():
        if cifar.is_cifar_batches_dir(path):
            return cifar.import_cifar_archive(path, limits=limits)
        return image_folder.import_image_folder(path, resize=resize, limits=limits)
    name = path.name.lower()
    if name.endswith(".npz"):
        return npz.import_npz(path, limits=limits)
    if name.endswith(".zip"):
        return image_folder.import_image_folder(path, resize=resize, limits=limits)
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return cifar.import_cifar_archive(path, limits=limits)
    raise DataError(f"{spec}: unrecognised file type; accepted: {ACCEPTED_SPECS}")
