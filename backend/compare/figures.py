"""Plotly figures built on the server and sent as JSON (drawn with Plotly.react in the page)."""

from __future__ import annotations

from backend import plotting
from backend.runs.downsample import downsample as shared_downsample
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
    if len(points) <= limit:
        return list(points)
    steps, values = shared_downsample([p[0] for p in points], [p[1] for p in points], limit)
    return list(zip(steps, values, strict=True))


def curves(title: str, traces: list[dict], found: Metric | None = None) -> dict:
    """One metric overlaid across runs: traces are {"label", "points", "color"?}; epochs
    from 1 in whole numbers, fractions (accuracy) as percentages."""
    data, last = [], 1
    percent = bool(found and found.percent)
    for index, trace in enumerate(traces):
        points = downsample(trace["points"])
        last = max([last, *(int(step) for step, _ in points)])
        data.append(
            {
                "type": "scatter",
                "x": [step for step, _ in points],
                "y": [value for _, value in points],
                "mode": "lines+markers" if len(points) < 40 else "lines",
                "name": trace["label"],
                "line": {
                    "color": trace.get("color") or PALETTE[index % len(PALETTE)],
                    "dash": "dash" if found and found.validation else "solid",
                },
            }
        )
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
