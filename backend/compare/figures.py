"""Plotly figures built on the server and sent as JSON (drawn with Plotly.react in the page)."""

from __future__ import annotations

from backend import plotting
from backend.runs.figures import kept_indices
from jobspec.metrics import Metric

MAX_POINTS = 500
PALETTE = ["#2f6feb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#0a7ea4", "#bc4c00", "#57606a"]
LAYOUT = {
    "margin": {"l": 56, "r": 16, "t": 36, "b": 44},
    "legend": {"orientation": "h", "y": -0.2},
    "height": 340,
}


def downsample(points: list, limit: int = MAX_POINTS) -> list:
    """(step, value) pairs shortened by the run page's bucketed min/max downsampler."""
    return [points[i] for i in kept_indices(points, limit)]


def curves(title: str, traces: list[dict], found: Metric | None = None) -> dict:
    """One metric overlaid across runs: traces are {"label", "points", "color"?, "wall"?};
    epochs from 1 in whole numbers, fractions (accuracy) as percentages. A run's points carry
    their wall times (seconds since its first epoch) as customdata for the page's time axis;
    a run of one epoch is a dot with its value written beside it."""
    data, last = [], 1
    percent = bool(found and found.percent)
    number = plotting.number_format(percent=percent)
    for index, trace in enumerate(traces):
        points, wall = trace["points"], trace.get("wall")
        kept = kept_indices(points, MAX_POINTS)
        steps = [points[i][0] for i in kept]
        last = max([last, *(int(step) for step in steps)])
        one = len(points) == 1
        line = {
            "type": "scatter",
            "meta": "curve",  # the page's controls (smoothing, wall time) apply to these
            "x": steps,
            "y": [points[i][1] for i in kept],
            "mode": "markers+text" if one else "lines+markers" if len(kept) < 40 else "lines",
            "name": trace["label"],
            "line": {
                "color": trace.get("color") or PALETTE[index % len(PALETTE)],
                "dash": "dash" if found and found.validation else "solid",
            },
            "hovertemplate": f"epoch %{{x}}<br>%{{y:{number}}}<extra>%{{fullData.name}}</extra>",
        }
        if one:  # one epoch: its value, not a lone dot
            line |= {"texttemplate": f"%{{y:{number}}}", "textposition": "middle right"}
            line["marker"] = {"size": 9}
        if wall and len(wall) == len(points):
            line["customdata"] = [wall[i] for i in kept]
        data.append(line)
    layout = {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": plotting.epoch_axis(last),
        "yaxis": plotting.value_axis(percent=percent),
        **LAYOUT,
    }
    return plotting.figure(data, layout)


def confusion(title: str, matrix: list[list[float]], class_names: list[str]) -> dict:
    """A confusion matrix heatmap (rows true, columns predicted), at most
    plotting.MAX_HEATMAP_CLASSES classes (those with the most errors)."""
    keep = plotting.heatmap_classes([matrix])
    shown = plotting.submatrix(matrix, keep)
    names = [class_names[i] for i in keep]
    trace = {
        "type": "heatmap",
        "z": shown,
        "x": names,
        "y": names,
        "colorscale": plotting.colorscale("Blues"),
        "hovertemplate": "true %{y}<br>predicted %{x}<br>%{z}<extra></extra>",
    }
    if len(keep) <= plotting.MAX_CELL_TEXT_CLASSES:
        trace |= {"text": shown, "texttemplate": "%{text}"}
    note = plotting.classes_note(len(keep), len(matrix))
    return plotting.figure(
        [trace], plotting.heatmap_layout(f"{title} ({note})" if note else title, height=380)
    )


def difference(title: str, matrix: list[list[float]], class_names: list[str]) -> dict:
    """B minus A, diverging around zero: red where B has more, blue where it has fewer
    (at most plotting.MAX_HEATMAP_CLASSES classes: those that changed most)."""
    keep = plotting.heatmap_classes([matrix])
    shown = plotting.submatrix(matrix, keep)
    peak = max([abs(v) for row in shown for v in row] + [1])
    trace = {
        "type": "heatmap",
        "z": shown,
        "x": [class_names[i] for i in keep],
        "y": [class_names[i] for i in keep],
        "colorscale": plotting.colorscale("RdBu"),
        "reversescale": True,
        "zmin": -peak,
        "zmax": peak,
        "hovertemplate": "true %{y}<br>predicted %{x}<br>%{z:+d}<extra></extra>",
    }
    if len(keep) <= plotting.MAX_CELL_TEXT_CLASSES:
        trace |= {"text": shown, "texttemplate": "%{text:+d}"}
    note = plotting.classes_note(len(keep), len(matrix)).replace("most errors", "most change")
    return plotting.figure(
        [trace], plotting.heatmap_layout(f"{title} ({note})" if note else title, height=380)
    )
