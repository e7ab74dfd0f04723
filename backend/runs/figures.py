"""Plotly figures of one run, built on the server and sent as JSON (optuna-dashboard style)."""

from __future__ import annotations

import io

import numpy as np

from backend import plotting
from backend.runs.downsample import downsample
from jobspec.metrics import metric

PALETTE = ["#2f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bc4c00", "#57606a"]
CURVE_PANELS = ("loss", "accuracy")  # timings and rates have their own views
RECON_ROWS = ("input", "ae01", "ae02", "ae03")


def _panel(name: str) -> str | None:
    """Which panel of the curves a metric goes to: loss, accuracy, or none."""
    panel = metric(name).panel
    return panel if panel in CURVE_PANELS else None


def curves_figure(
    series: dict[str, list], *, max_points: int = 500, best_epoch: int | None = None
) -> dict:
    """Loss and accuracy per stage, train solid and validation dashed, long series shortened.

    best_epoch: drawn as a vertical line (early stopping's pick) on both panels.
    """
    stages = sorted({key.rsplit("/", 1)[0] for key in series}, key=_stage_order)
    present = {_panel(key.rsplit("/", 1)[1]) for key in series}
    panels = [p for p in CURVE_PANELS if p in present] or ["loss"]
    data = []
    for key in sorted(series):
        stage, name = key.rsplit("/", 1)
        panel = _panel(name)
        if panel not in panels:
            continue
        points = series[key]
        xs, ys = downsample([p[0] for p in points], [p[1] for p in points], max_points)
        validation = name.startswith("val_")
        axis = "" if panels.index(panel) == 0 else "2"
        data.append(
            {
                "type": "scatter",
                "x": xs,
                "y": ys,
                "xaxis": f"x{axis}",
                "yaxis": f"y{axis}",
                "mode": "lines+markers" if len(xs) <= 60 else "lines",
                "marker": {"size": 4},
                "name": f"{stage} {'val' if validation else 'train'} {name.removeprefix('val_')}",
                "legendgroup": stage,
                "line": {
                    "color": PALETTE[stages.index(stage) % len(PALETTE)],
                    "dash": "dash" if validation else "solid",
                    "width": 2,
                },
            }
        )
    return plotting.figure(data, _curves_layout(panels, best_epoch))


def _curves_layout(panels: list[str], best_epoch: int | None) -> dict:
    """One subplot per panel side by side, titled, with the best epoch marked."""
    width = 1.0 / len(panels)
    layout = {
        "height": 360,
        "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
        "legend": {"orientation": "h", "y": -0.22},
        "uirevision": "curves",  # keep the user's zoom while the figure grows
        "annotations": [],
        "shapes": [],
    }
    for index, panel in enumerate(panels):
        suffix = "" if index == 0 else str(index + 1)
        left, right = index * width + (0.04 if index else 0), (index + 1) * width - 0.04
        layout[f"xaxis{suffix}"] = {
            "domain": [left, right],
            "anchor": f"y{suffix}",
            "title": {"text": "epoch"},
            "rangemode": "tozero",
        }
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}"}
        layout["annotations"].append(
            {
                "text": panel.title(),
                "x": (left + right) / 2,
                "y": 1.0,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 14},
            }
        )
        if best_epoch:
            layout["shapes"].append(
                {
                    "type": "line",
                    "x0": best_epoch,
                    "x1": best_epoch,
                    "y0": 0,
                    "y1": 1,
                    "xref": f"x{suffix}",
                    "yref": f"y{suffix} domain",
                    "line": {"color": "#9a6700", "dash": "dot", "width": 1.5},
                }
            )
    if best_epoch:
        layout["annotations"].append(
            {
                "x": best_epoch,
                "y": 1.0,
                "xref": "x",
                "yref": "paper",
                "showarrow": False,
                "text": f"best epoch {best_epoch}",
                "yanchor": "bottom",
                "font": {"size": 11, "color": "#9a6700"},
            }
        )
    return layout


def _stage_order(stage: str) -> tuple:
    if stage.startswith("trial-") and stage[6:].isdigit():
        return (1, int(stage[6:]), stage)
    return (0, 0, stage)


def confusion_figure(matrix: list[list[int]], class_names: list[str]) -> dict:
    """Heatmap of true (rows) vs predicted (columns) with counts and row-normalised colour."""
    full = np.asarray(matrix, dtype=float)
    totals = full.sum(axis=1, keepdims=True)  # a row's share counts every class it went to
    share = np.divide(full, totals, out=np.zeros_like(full), where=totals > 0)
    keep = plotting.heatmap_classes([matrix])
    counts, share = full[np.ix_(keep, keep)], share[np.ix_(keep, keep)]
    names = [str(class_names[i]) for i in keep]
    trace = {
        "type": "heatmap",
        "z": share.round(4).tolist(),
        "x": names,
        "y": names,
        "text": counts.astype(int).tolist(),
        "colorscale": plotting.colorscale("Blues"),
        "zmin": 0,
        "zmax": 1,
        "colorbar": {"title": {"text": "share of row"}},
        "hovertemplate": "true %{y}<br>predicted %{x}<br>%{text} images (%{z:.0%})<extra></extra>",
    }
    if len(keep) <= plotting.MAX_CELL_TEXT_CLASSES:
        trace["texttemplate"] = "%{text}"
    height = max(360, min(40 * len(names), 1200) + 160)
    title = plotting.classes_note(len(keep), len(matrix)) or None
    return plotting.figure([trace], plotting.heatmap_layout(title, height=height))


def reconstructions_png(npz: io.BytesIO | bytes, *, scale: int = 3, gap: int = 2) -> bytes:
    """One PNG grid: a row per array (input, ae01, ae02, ae03), a column per probe image."""
    from PIL import Image

    with np.load(io.BytesIO(npz) if isinstance(npz, bytes) else npz, allow_pickle=False) as data:
        rows = [np.asarray(data[key]) for key in RECON_ROWS if key in data.files]
    if not rows:
        raise ValueError("no reconstruction arrays")
    count = min(len(r) for r in rows)
    height, width = rows[0].shape[1:3]
    cell_h, cell_w = height * scale + gap, width * scale + gap
    grid = np.full((len(rows) * cell_h + gap, count * cell_w + gap, 3), 255, dtype=np.uint8)
    for r, images in enumerate(rows):
        for c in range(count):
            tile = _to_uint8_rgb(images[c]).repeat(scale, axis=0).repeat(scale, axis=1)
            top, left = gap + r * cell_h, gap + c * cell_w
            grid[top : top + height * scale, left : left + width * scale] = tile
    out = io.BytesIO()
    Image.fromarray(grid).save(out, format="PNG", optimize=True)
    return out.getvalue()


def recon_row_labels(npz: bytes) -> list[str]:
    """Names of the rows reconstructions_png draws, in order."""
    with np.load(io.BytesIO(npz), allow_pickle=False) as data:
        return [key for key in RECON_ROWS if key in data.files]


def _to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:  # floats in 0..1 from older runs
        image = np.clip(np.asarray(image, dtype=float) * (255 if image.max() <= 1.0 else 1), 0, 255)
        image = image.astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image[..., :3]
