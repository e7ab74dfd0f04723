"""What the data set pages draw: the class distribution chart and a grid of sample images."""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from sqlalchemy.orm import Session

from backend.config import get_settings
from backend.datasets import service as datasets_service
from backend.datasets.models import DatasetRecord

TILE, GAP = 32, 2
BACKGROUND = (226, 230, 236)


def grid_size(n_classes: int, per_class: int) -> tuple[int, int]:
    """(width, height) in pixels of the samples grid: one row per class."""
    return GAP + per_class * (TILE + GAP), GAP + n_classes * (TILE + GAP)


def class_distribution(record: DatasetRecord) -> dict:
    """Grouped bars of images per class in train and test, as Plotly figure JSON."""
    # Plotly reads a few HTML tags in labels; escaped, a class name shows as written.
    labels = [html.escape(name) for name in record.class_names]
    fig = go.Figure(
        [
            go.Bar(name=split, x=labels, y=[counts.get(name, 0) for name in record.class_names])
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
    return json.loads(fig.to_json())


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


def samples_png(*, session: Session, record: DatasetRecord, per_class: int) -> Path:
    """The samples grid as a PNG file, rendered once per data set content and size."""
    cache = get_settings().cache_dir
    target = cache / "samples" / f"{record.fingerprint}-{per_class}.png"
    if target.exists():
        return target
    arrays = datasets_service.fetch_to_cache(session=session, dataset_id=record.id, cache_dir=cache)
    with np.load(arrays, allow_pickle=False) as data:
        x, y = data["x_train"], data["y_train"]
        if len(y) == 0:
            x, y = data["x_test"], data["y_test"]
    image = render_grid(x, y.reshape(-1), len(record.class_names), per_class)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".samples-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG")
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
