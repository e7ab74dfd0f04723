"""Plotly figures of one run, built on the server and sent as JSON (optuna-dashboard style)."""

from __future__ import annotations

import io
import json

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from backend.runs.downsample import downsample

PALETTE = ["#2f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bc4c00", "#57606a"]
SKIP = ("epoch_seconds", "images_per_sec", "learning_rate", "lr")
RECON_ROWS = ("input", "ae01", "ae02", "ae03")


def _panel(name: str) -> str | None:
    """Which panel a metric goes to: loss, accuracy, or none (timings, rates)."""
    if name in SKIP:
        return None
    if "loss" in name:
        return "loss"
    if "acc" in name:
        return "accuracy"
    return None


def curves_figure(
    series: dict[str, list], *, max_points: int = 500, best_epoch: int | None = None
) -> go.Figure:
    """Loss and accuracy per stage, train solid and validation dashed, long series shortened.

    best_epoch: drawn as a vertical line (early stopping's pick) on both panels.
    """
    stages = sorted({key.rsplit("/", 1)[0] for key in series}, key=_stage_order)
    panels = [
        p for p in ("loss", "accuracy") if any(_panel(k.rsplit("/", 1)[1]) == p for k in series)
    ]
    panels = panels or ["loss"]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p.title() for p in panels])
    for key in sorted(series):
        stage, name = key.rsplit("/", 1)
        panel = _panel(name)
        if panel not in panels:
            continue
        points = series[key]
        xs, ys = downsample([p[0] for p in points], [p[1] for p in points], max_points)
        validation = name.startswith("val_")
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers" if len(xs) <= 60 else "lines",
                marker={"size": 4},
                name=f"{stage} {'val' if validation else 'train'} {name.removeprefix('val_')}",
                legendgroup=stage,
                line={
                    "color": PALETTE[stages.index(stage) % len(PALETTE)],
                    "dash": "dash" if validation else "solid",
                    "width": 2,
                },
            ),
            row=1,
            col=panels.index(panel) + 1,
        )
    if best_epoch:
        for col in range(1, len(panels) + 1):
            fig.add_vline(
                x=best_epoch, line={"color": "#9a6700", "dash": "dot", "width": 1.5}, row=1, col=col
            )
        fig.add_annotation(
            x=best_epoch,
            y=1.0,
            yref="paper",
            xref="x",
            text=f"best epoch {best_epoch}",
            showarrow=False,
            yanchor="bottom",
            font={"size": 11, "color": "#9a6700"},
        )
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    fig.update_layout(
        height=360,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.22},
        template="plotly_white",
        uirevision="curves",  # keep the user's zoom while the figure grows
    )
    return fig


def _stage_order(stage: str) -> tuple:
    if stage.startswith("trial-") and stage[6:].isdigit():
        return (1, int(stage[6:]), stage)
    return (0, 0, stage)


def confusion_figure(matrix: list[list[int]], class_names: list[str]) -> go.Figure:
    """Heatmap of true (rows) vs predicted (columns) with counts and row-normalised colour."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    names = [str(c) for c in class_names]
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=names,
            y=names,
            text=counts.astype(int),
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "share of row"}},
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} images (%{z:.0%})<extra></extra>",
        )
    )
    size = max(360, 40 * len(names) + 160)
    fig.update_layout(
        height=size,
        margin={"l": 90, "r": 20, "t": 20, "b": 80},
        xaxis={"title": {"text": "predicted"}, "side": "bottom"},
        yaxis={"title": {"text": "true"}, "autorange": "reversed"},
        template="plotly_white",
    )
    return fig


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


def as_json(fig: go.Figure) -> dict:
    """The figure as plain JSON types (numpy arrays included), ready for any JSON response."""
    return json.loads(fig.to_json())
