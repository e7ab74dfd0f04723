"""PNG pictures for headless runs: reconstructions and confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def reconstruction_grid(probes: dict[str, np.ndarray], path: Path, scale: int = 3) -> Path:
    """One row per entry (input, ae01, ...), one column per probe image, upscaled."""
    rows = [np.concatenate(list(images), axis=1) for images in probes.values()]
    grid = np.concatenate(rows, axis=0)
    image = Image.fromarray(grid).resize(
        (grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST
    )
    image.save(path)
    return path


# Bounds that keep the picture's memory flat up to a thousand classes: a figure sized by
# its class count once took 2.9 GB for 150 classes (a 9,200-pixel square, 22,500 labels).
MAX_FIGURE_INCHES = 12.0
DPI = 100
MAX_ANNOTATED_CLASSES = 30  # counts written in the cells up to this many classes
MAX_TICK_LABELS = 50  # class names on the axes; beyond, every k-th class is named


def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Heatmap of a confusion matrix; counts in the cells while there are few classes."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never open a window
    import matplotlib.pyplot as plt

    n = len(class_names)
    size = min(MAX_FIGURE_INCHES, max(4.0, 0.6 * n + 2))
    fig, ax = plt.subplots(figsize=(size, size))
    # Colours computed here as 8-bit RGBA: matplotlib's own colour mapping keeps several
    # float copies of the matrix (150 MB for 1,000 classes).
    top = matrix.max() if matrix.size else 0
    shade = np.asarray(matrix, dtype=np.float32) / (top or 1)
    ax.imshow(plt.get_cmap("Blues")(shade, bytes=True), interpolation="nearest")
    step = max(1, -(-n // MAX_TICK_LABELS))  # ceil(n / MAX_TICK_LABELS)
    ticks = list(range(0, n, step))
    labels = [class_names[i] for i in ticks]
    fontsize = 8 if n <= MAX_ANNOTATED_CLASSES else 6
    rotation, ha = (45, "right") if step == 1 else (90, "center")
    ax.set_xticks(ticks, labels, fontsize=fontsize, rotation=rotation, ha=ha)
    ax.set_yticks(ticks, labels, fontsize=fontsize)
    ax.set_xlabel("predicted" if step == 1 else f"predicted (every {step}th class named)")
    ax.set_ylabel("true")
    if n <= MAX_ANNOTATED_CLASSES:
        threshold = top / 2
        small = 8 if n <= 15 else 6
        for (i, j), count in np.ndenumerate(matrix):
            color = "white" if count > threshold else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=small)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
