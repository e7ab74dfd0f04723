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


def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Heatmap of a confusion matrix with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never open a window
    import matplotlib.pyplot as plt

    size = max(4.0, 0.6 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
