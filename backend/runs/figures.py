"""Plotly figures of one run, built on the server and sent as JSON (optuna-dashboard style)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

from backend import plotting
from backend.runs.downsample import downsample
from jobspec.metrics import metric
from jobspec.stages import FINETUNE_STAGE, STAGES, TRIAL_STAGE
from store.runs.samples import Series

PALETTE = ["#2f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bc4c00", "#57606a"]
CURVE_PANELS = ("loss", "accuracy")  # timings and rates have their own views
RECON_ROWS = ("input", *STAGES)
# Train and validation, loss and accuracy: never one colour for two of them (validation is
# also dashed, for print and colour-blind readers).
SERIES_COLOURS = {
    ("loss", False): "#2f6feb",
    ("loss", True): "#bc4c00",
    ("accuracy", False): "#1a7f37",
    ("accuracy", True): "#8250df",
    ("balanced_accuracy", False): "#0a7ea4",
    ("balanced_accuracy", True): "#9a6700",
    ("macro_f1", False): "#57606a",
    ("macro_f1", True): "#d1242f",
}
TRIALS = "trials"  # a tune's trials share one column, one colour per trial
CELL_HEIGHT = 300


def _panel(name: str) -> str | None:
    """Which panel of the curves a metric goes to: loss, accuracy, or none."""
    panel = metric(name).panel
    return panel if panel in CURVE_PANELS else None


def _column(stage: str) -> str:
    """Each stage gets its own epoch axis (small multiples); trials share one."""
    return TRIALS if stage.startswith("trial-") else stage


def panel_key(panel: str, column: str) -> str:
    """A curves cell's name in the panel picker and its `hide` list: "ae01/loss"."""
    return f"{column}/{panel}"


def _layout_of(series: dict[str, list], plan: dict[str, int] | None) -> tuple[list, dict, list]:
    """The keys drawn, the planned epochs per column and the (panel, column) cells."""
    keys = [k for k in series if _panel(k.rsplit("/", 1)[1]) and series[k]]
    planned = {stage: n for stage, n in (plan or {}).items() if not stage.startswith(TRIAL_STAGE)}
    columns = sorted({_column(k.rsplit("/", 1)[0]) for k in keys} | set(planned), key=_stage_order)
    panels = [p for p in CURVE_PANELS if any(_panel(k.rsplit("/", 1)[1]) == p for k in keys)]
    cells = [(p, c) for p in panels or ["loss"] for c in columns or ["epoch"]]
    return keys, planned, cells


def curve_panels(series: dict[str, list], plan: dict[str, int] | None = None) -> list[dict]:
    """The cells curves_figure can draw, for the panel picker: [{"key", "label"}]."""
    _, _, cells = _layout_of(series, plan)
    single = len({c for _, c in cells}) == 1
    return [
        {"key": panel_key(p, c), "label": p.title() if single else f"{c} · {p}"} for p, c in cells
    ]


def curves_figure(
    series: dict[str, list],
    *,
    max_points: int = 500,
    best_epoch: int | None = None,
    best_stage: str | None = None,
    plan: dict[str, int] | None = None,
    wall: dict[str, list[float | None]] | None = None,
    hide: frozenset[str] = frozenset(),
) -> dict:
    """Loss and accuracy as small multiples: one cell per (panel, stage), each with its own
    epoch axis from 1 and its own legend; train solid, validation dashed in another colour.

    plan: stage -> planned epochs: every planned stage gets its cell (empty until it trains)
    and its axis spans the epochs still to come.
    best_epoch: the kept epoch of `best_stage` (the kind's evaluated stage: early
    stopping's pick), a vertical line in that stage's cells.
    wall: key -> seconds since the run's first epoch ended, point for point with series:
    each trace carries its points' times as customdata (the page's wall-time axis).
    hide: panel_key()s of the cells left out (the page's panel picker).
    A stage of one epoch is drawn as bars with their values written on them, not dots.
    """
    keys, planned, every = _layout_of(series, plan)
    cells = [cell for cell in every if panel_key(*cell) not in hide]
    if not cells:
        return plotting.figure([], {"height": 80, "annotations": [], "shapes": []})
    panels = list(dict.fromkeys(p for p, _ in cells))
    columns = list(dict.fromkeys(c for _, c in cells))
    grid = _Grid(cells, rows=len(panels), cols=len(columns))
    stages = sorted({k.rsplit("/", 1)[0] for k in keys}, key=_stage_order)
    trial_index = {s: i for i, s in enumerate(stages)}
    data, last = [], dict.fromkeys(cells, 1)
    for key in keys:
        stage = key.rsplit("/", 1)[0]
        last_seen = max(int(p[0]) for p in series[key])
        cell = (_panel(key.rsplit("/", 1)[1]) or "", _column(stage))
        if cell in last:
            last[cell] = max(last[cell], last_seen)
    for key in sorted(keys, key=lambda k: (_stage_order(k.rsplit("/", 1)[0]), k)):
        stage, name = key.rsplit("/", 1)
        cell = (_panel(name) or "", _column(stage))  # a panel: keys were picked by it
        if cell not in last:
            continue
        points = series[key]
        index = kept_indices(points, max_points)
        xs, ys = [points[i][0] for i in index], [points[i][1] for i in index]
        times = (wall or {}).get(key)
        seconds = [times[i] for i in index] if times and len(times) == len(points) else None
        one_epoch = max(last[cell], planned.get(cell[1], 0)) == 1
        trace = _trace(stage, name, xs, ys, grid.index(cell), trial_index.get(stage, 0))
        if seconds is not None:
            trace["customdata"] = seconds
        data.append(_as_bar(trace, name) if one_epoch else trace)
    layout = grid.layout()
    if any(t["type"] == "bar" for t in data):
        layout["barmode"] = "group"
    for cell in cells:
        epochs = max(last[cell], planned.get(cell[1], 0))
        marked = best_stage is not None and cell[1] == _column(best_stage)
        grid.style(layout, cell, epochs, best_epoch if marked else None)
    return plotting.figure(data, layout)


def kept_indices(points: list, max_points: int) -> list[int]:
    """Indices of the (step, value) points downsample keeps (first, last, the extremes), so
    what rides along with each point (its wall time) is kept with it."""
    kept, _ = downsample(list(range(len(points))), [p[1] for p in points], max_points)
    return [int(i) for i in kept]


def _as_bar(trace: dict, name: str) -> dict:
    """A one-epoch series as a bar with its value written on it (a lone dot reads as a
    missing curve); bars of one cell stand side by side, train solid, validation hatched."""
    colour = trace["line"]["color"]
    validation = trace["line"]["dash"] == "dash"
    number = plotting.number_format(percent=metric(name).percent)
    bar = {k: v for k, v in trace.items() if k not in ("mode", "line", "marker")}
    return {
        **bar,
        "type": "bar",
        "width": 0.35,
        "offsetgroup": trace["name"],
        "marker": {
            "color": colour,
            "pattern": {"shape": "/" if validation else ""},
            "line": {"color": colour, "width": 1},
        },
        "texttemplate": f"%{{y:{number}}}",
        "textposition": "outside",
        "cliponaxis": False,
    }


def _trace(stage: str, name: str, xs: list[float], ys: list[float], index: int, trial: int) -> dict:
    found = metric(name)
    base, validation = name.removeprefix("val_"), found.validation
    if stage.startswith("trial-"):  # one hue per trial, validation dashed
        colour, label = PALETTE[trial % len(PALETTE)], f"{stage} {'val' if validation else 'train'}"
    else:
        colour = SERIES_COLOURS.get((base, validation), PALETTE[sum(map(ord, name)) % len(PALETTE)])
        label = f"{'val' if validation else 'train'} {metric(base).label}"
    suffix = "" if index == 0 else str(index + 1)
    number = f"%{{y:{plotting.number_format(percent=found.percent)}}}"
    return {
        "meta": "curve",  # the page's controls (smoothing, wall time) apply to these
        "type": "scatter",
        "x": xs,
        "y": ys,
        "xaxis": f"x{suffix}",
        "yaxis": f"y{suffix}",
        "legend": f"legend{suffix}",
        "mode": "lines+markers" if len(xs) <= 60 else "lines",
        "marker": {"size": 5},
        "name": label,
        "legendgroup": f"{stage}-{index}",
        "line": {"color": colour, "dash": "dash" if validation else "solid", "width": 2},
        # A template is not escaped for us (it is ours): the stored names in it are.
        "hovertemplate": f"{plotting.text(stage)} epoch %{{x}}<br>{plotting.text(label)} "
        f"{number}<extra></extra>",
    }


class _Grid:
    """Cells laid out rows = panels, columns = stages; one row when there is one stage."""

    H_GAP, V_GAP = 0.06, 0.16

    def __init__(self, cells: list[tuple[str, str]], *, rows: int, cols: int):
        self.single = cols == 1
        panels = list(dict.fromkeys(p for p, _ in cells))
        columns = list(dict.fromkeys(c for _, c in cells))
        if self.single:  # one stage: its panels side by side
            rows, cols = 1, len(cells)
            self.at = {cell: (0, i) for i, cell in enumerate(cells)}
        else:  # a hidden cell leaves its place empty: rows stay panels, columns stages
            self.at = {(p, c): (panels.index(p), columns.index(c)) for p, c in cells}
        self.cells, self.rows, self.cols = cells, rows, cols

    def index(self, cell: tuple[str, str]) -> int:
        return self.cells.index(cell)

    def box(self, index: int) -> tuple[list[float], list[float]]:
        row, col = self.at[self.cells[index]]
        width = (1 - self.H_GAP * (self.cols - 1)) / self.cols
        height = (1 - self.V_GAP * (self.rows - 1)) / self.rows
        left = col * (width + self.H_GAP)
        top = 1 - row * (height + self.V_GAP)
        return [left, left + width], [top - height, top]

    def layout(self) -> dict:
        return {
            "height": CELL_HEIGHT * self.rows + 60,
            "margin": {"l": 56, "r": 16, "t": 36, "b": 44},
            "showlegend": True,
            "uirevision": "curves",  # keep the user's zoom while the figure grows
            "annotations": [],
            "shapes": [],
        }

    def style(self, layout: dict, cell: tuple[str, str], epochs: int, best: int | None) -> None:
        """Axes, title, legend and the best-epoch line of one cell."""
        index = self.index(cell)
        suffix = "" if index == 0 else str(index + 1)
        (x0, x1), (y0, y1) = self.box(index)
        panel, column = cell
        layout[f"xaxis{suffix}"] = plotting.epoch_axis(
            epochs, domain=[x0, x1], anchor=f"y{suffix}", title=_epoch_title(column)
        )
        layout[f"yaxis{suffix}"] = plotting.value_axis(
            percent=panel == "accuracy", domain=[y0, y1], anchor=f"x{suffix}"
        )
        # Losses fall and accuracies rise: each legend sits in the corner its curves leave empty.
        low = panel == "accuracy"
        layout[f"legend{suffix}"] = {
            "x": x1,
            "y": y0 if low else y1,
            "xanchor": "right",
            "yanchor": "bottom" if low else "top",
            "bgcolor": "rgba(255,255,255,0.75)",
            "font": {"size": 11},
        }
        title = panel.title() if self.single else f"{column} · {panel}"
        layout["annotations"].append(_title(title, (x0 + x1) / 2, y1))
        if best:
            layout["shapes"].append(_best_line(best, suffix))
            layout["annotations"].append(_best_note(best, suffix, y1))


def _epoch_title(column: str) -> str:
    return "epoch" if column in (FINETUNE_STAGE, "epoch") else f"{column} epoch"


def _title(text: str, x: float, y: float) -> dict:
    return {
        "text": text,
        "x": x,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 14},
    }


def _best_line(best: int, suffix: str) -> dict:
    return {
        "type": "line",
        "x0": best,
        "x1": best,
        "y0": 0,
        "y1": 1,
        "xref": f"x{suffix}",
        "yref": f"y{suffix} domain",
        "line": {"color": "#9a6700", "dash": "dot", "width": 1.5},
    }


def _best_note(best: int, suffix: str, top: float) -> dict:
    return {
        "x": best,
        "y": top,
        "xref": f"x{suffix}",
        "yref": "paper",
        "showarrow": False,
        "text": f"best epoch {best}",
        "xanchor": "left",
        "yanchor": "top",
        "font": {"size": 11, "color": "#9a6700"},
    }


def _stage_order(stage: str) -> tuple:
    if stage == TRIALS:
        return (1, 0, stage)
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


def system_figure(series: Mapping[str, Series], *, max_points: int = 500) -> dict | None:
    """The worker's process memory and CPU (and GPU use where it has one) from the run's
    samples, against seconds since the run started: one panel per series, side by side,
    each attempt's stretch shortened apart (a gap between attempts); None without samples."""
    order = {name: i for i, name in enumerate(_SYSTEM_ORDER)}
    keys = sorted((k for k in series if series[k].values), key=lambda k: order.get(k, len(order)))
    if not keys:
        return None
    data, layout = [], {"height": 260, "showlegend": False, "margin": {"t": 40, "b": 50}}
    gap = 0.06
    width = (1 - gap * (len(keys) - 1)) / len(keys)
    for i, key in enumerate(keys):
        suffix = "" if i == 0 else str(i + 1)
        info = metric(key)
        xs, ys = _attempt_stretches(series[key], max_points)
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": info.label,
                "x": xs,
                "y": ys,
                "xaxis": f"x{suffix}",
                "yaxis": f"y{suffix}",
                "line": {"color": PALETTE[i % len(PALETTE)]},
                "hovertemplate": f"%{{x}} s: %{{y:.1f}} {info.unit}<extra></extra>",
            }
        )
        x0 = i * (width + gap)
        layout[f"xaxis{suffix}"] = {
            "domain": [x0, x0 + width],
            "title": {"text": "seconds since the run started"},
            "rangemode": "tozero",
            "anchor": f"y{suffix}",
        }
        layout[f"yaxis{suffix}"] = {
            "title": {"text": f"{info.label} ({info.unit})"},
            "rangemode": "tozero",
            "anchor": f"x{suffix}",
        }
    return plotting.figure(data, layout)


def _attempt_stretches(found: Series, max_points: int) -> tuple[list, list]:
    """One series' points, each attempt downsampled on its own share of max_points and
    the attempts separated by a gap (None), so no line joins two workers' readings."""
    bounds = [0] + [
        i for i in range(1, len(found.attempts)) if found.attempts[i] != found.attempts[i - 1]
    ]
    bounds.append(len(found.attempts))
    share = max(max_points // max(len(bounds) - 1, 1), 4)
    xs: list = []
    ys: list = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        if xs:
            xs.append(None)
            ys.append(None)
        part = downsample(found.seconds[start:stop], found.values[start:stop], share)
        xs += part[0]
        ys += part[1]
    return xs, ys


_SYSTEM_ORDER = ("rss_mb", "cpu_percent", "gpu_util", "gpu_mem_mb")
