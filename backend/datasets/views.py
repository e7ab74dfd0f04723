"""What the data set pages draw: the class distribution chart and a grid of sample images."""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from sqlalchemy.orm import Session

from backend import plotting
from backend.datasets.schemas import DatasetRead
from store.datasets import service as datasets_service
from store.errors import NotFound
from store.settings import get_settings

TILE, GAP = 32, 2
HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
# Rows of the samples grid: a data set with thousands of classes shows the first ones.
MAX_GRID_CLASSES = 100
BACKGROUND = (226, 230, 236)


def grid_size(n_classes: int, per_class: int) -> tuple[int, int]:
    """(width, height) in pixels of the samples grid: one row per class."""
    return GAP + per_class * (TILE + GAP), GAP + n_classes * (TILE + GAP)


def class_distribution(record: DatasetRead) -> dict:
    """Grouped bars of images per class in train and test, as Plotly figure JSON."""
    fig = go.Figure(
        [
            go.Bar(
                name=split,
                x=record.class_names,
                y=[counts.get(name, 0) for name in record.class_names],
            )
            for split, counts in (("train", record.train_counts), ("test", record.test_counts))
        ]
    )
    fig.update_layout(
        barmode="group",
        height=340,
        margin={"l": 50, "r": 20, "t": 40, "b": 60},
        yaxis_title="images",
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
    )
    fig.update_xaxes(type="category")
    return plotting.escape_figure(json.loads(fig.to_json()))  # class names show as written


def grid_classes(n_classes: int) -> int:
    """How many classes the samples grid shows: the first MAX_GRID_CLASSES at most."""
    return min(n_classes, MAX_GRID_CLASSES)


def render_grid(x: np.ndarray, y: np.ndarray, n_classes: int, per_class: int) -> Image.Image:
    """The first `per_class` images of each class, one row per class; blank where too few."""
    width, height = grid_size(n_classes, per_class)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    for cls in range(n_classes):
        for col, index in enumerate(np.flatnonzero(y == cls)[:per_class]):
            top, left = GAP + cls * (TILE + GAP), GAP + col * (TILE + GAP)
            canvas[top : top + TILE, left : left + TILE] = x[index]
    return Image.fromarray(canvas, "RGB")


def samples_png(*, session: Session, record: DatasetRead, per_class: int) -> Path:
    """The samples grid as a PNG file, rendered once per data set content and size. Only
    the tiles it shows are read from the arrays file, so memory stays small whatever the
    data set's size or number of classes."""
    cache = get_settings().cache_dir
    n_classes = grid_classes(record.n_classes)
    target = cache / "samples" / f"{record.fingerprint}-{per_class}-{n_classes}.png"
    if target.exists():
        return target
    arrays = datasets_service.fetch_to_cache(session=session, dataset_id=record.id, cache_dir=cache)
    x, y = read_samples(arrays, n_classes=n_classes, per_class=per_class)
    image = render_grid(x, y, n_classes, per_class)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".samples-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def read_samples(arrays: Path, *, n_classes: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` training images (test images when there are none) of classes
    below n_classes, and their labels, read row by row from the data set's .npz."""
    with zipfile.ZipFile(arrays) as archive:
        split = "train"
        y = _read_labels(archive, "y_train.npy")
        if len(y) == 0:
            split, y = "test", _read_labels(archive, "y_test.npy")
        picks = [np.flatnonzero(y == cls)[:per_class] for cls in range(n_classes)]
        rows = np.sort(np.concatenate(picks)) if picks else np.empty(0, dtype=np.int64)
        return _read_rows(archive, f"x_{split}.npy", rows), y[rows]


def _read_labels(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    with archive.open(member) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False).reshape(-1)


def _read_rows(archive: zipfile.ZipFile, member: str, rows: np.ndarray) -> np.ndarray:
    """Rows of an (N, 32, 32, 3) uint8 array, read one by one in ascending order."""
    with archive.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        header = HEADER_READERS.get(version)
        if header is None:
            raise ValueError(f"{member}: unsupported .npy version {version}")
        shape, fortran, dtype = header(fh)
        if fortran or dtype != np.uint8 or tuple(shape[1:]) != (TILE, TILE, 3):
            raise ValueError(f"{member}: not an (N, 32, 32, 3) uint8 array")
        start, size = fh.tell(), TILE * TILE * 3
        out = np.empty((len(rows), TILE, TILE, 3), dtype=np.uint8)
        for i, row in enumerate(rows):
            fh.seek(start + int(row) * size)  # forward only: rows are sorted
            out[i] = np.frombuffer(fh.read(size), dtype=np.uint8).reshape(TILE, TILE, 3)
        return out


def test_image_png(*, session: Session, record: DatasetRead, index: int, scale: int) -> bytes:
    """One test image as a PNG, each pixel a `scale` x `scale` block (for thumbnails)."""
    if not 0 <= index < record.n_test:
        raise NotFound("test image", f"{index} of data set {record.name!r} ({record.n_test})")
    cache = get_settings().cache_dir
    arrays = datasets_service.fetch_to_cache(session=session, dataset_id=record.id, cache_dir=cache)
    with zipfile.ZipFile(arrays) as archive:
        image = _read_rows(archive, "x_test.npy", np.array([index]))[0]
    out = io.BytesIO()
    Image.fromarray(image.repeat(scale, axis=0).repeat(scale, axis=1), "RGB").save(out, "PNG")
    return out.getvalue()
