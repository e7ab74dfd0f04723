"""Plotly figure specs as plain data, for the hot paths (curves, heatmaps).

Building `plotly.graph_objects` figures validates every property in Python: 20-100 ms per
figure here, which alone broke the 100 ms page budget of a 10-run compare. These helpers
write the same Plotly JSON ({"data": [...], "layout": {...}}) directly: 50x faster. The
slower, richer graph_objects stay where they are rare (Optuna's own study plots).

Plotly.js reads a few HTML tags in any text it draws (<a href>, <b>, <br>, <span style>...):
a run named `<a href="https://evil.example">x</a>` would become a live link in a legend.
Every figure that leaves the server goes through `escape_figure` (`figure` does it), so user
text (run names, tags, class names, parameter values) shows as written.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import plotly.colors as pc
import plotly.io as pio


@lru_cache
def template() -> dict:
    """The plotly_white template as data (Plotly.js does not know templates by name)."""
    return pio.templates["plotly_white"].to_plotly_json()


@lru_cache
def colorscale(name: str) -> list:
    """A named colour scale as Python's plotly defines it, spelled out.

    Plotly.js has built-in scales of the same names running the other way ("Blues" goes
    dark to light there), so a name must not reach the browser.
    """
    return pc.get_colorscale(name)


# Templates are ours and carry markup on purpose (<br>, <extra>); "template" is plotly's theme.
TRUSTED_KEYS = frozenset({"hovertemplate", "texttemplate", "template"})
BREAK = "<br>"
_PLAIN = frozenset({int, float, bool, type(None)})  # arrays of numbers: nothing to escape


def text(value: Any, *, keep_breaks: bool = False) -> str:
    """A string Plotly will draw literally: `<`, `>` and `&` as entities.

    keep_breaks: leave `<br>` as a line break (Optuna writes its hover text with them).
    """
    value = str(value)
    if keep_breaks:
        return BREAK.join(html.escape(part, quote=False) for part in value.split(BREAK))
    return html.escape(value, quote=False)


def escape_figure(node: Any, *, keep_breaks: bool = False) -> Any:
    """The figure (or any part of one) with every string escaped, bar the trusted templates.

    Plotly attribute values that are not text (colours, modes, axis ids, "paper") never hold
    `<`, `>` or `&`, so escaping them changes nothing.
    """
    if isinstance(node, str):
        return text(node, keep_breaks=keep_breaks)
    if isinstance(node, dict):
        return {
            key: value if key in TRUSTED_KEYS else escape_figure(value, keep_breaks=keep_breaks)
            for key, value in node.items()
        }
    if isinstance(node, list | tuple):
        if {type(item) for item in node} <= _PLAIN:  # the long x/y arrays: skip fast
            return node
        return [escape_figure(item, keep_breaks=keep_breaks) for item in node]
    return node


# Plotly's WebGL traces compile their shaders' glue with `new Function` (regl), which the
# pages' Content-Security-Policy (script-src 'self', no 'unsafe-eval') blocks: the chart
# fails, and the browser reports a violation. Every figure uses SVG traces.
WEBGL_TRACES = frozenset(
    {"scattergl", "scatterpolargl", "splom", "parcoords", "heatmapgl", "pointcloud"}
)


def figure(data: list[dict], layout: dict) -> dict:
    """A figure spec ready for JSON and Plotly.react(el, fig.data, fig.layout), text escaped.
    Refuses WebGL trace types (WEBGL_TRACES): they cannot run under the pages' CSP."""
    webgl = sorted({str(t.get("type")) for t in data} & WEBGL_TRACES)
    if webgl:
        raise ValueError(f"WebGL traces {webgl} need eval, which the CSP forbids: use SVG ones")
    return {
        "data": escape_figure(data),
        "layout": {"template": template(), **escape_figure(layout)},
    }


def epoch_axis(epochs: int, **extra: Any) -> dict:
    """An epoch axis: starts at 1, ticks on whole epochs (1, then every 1, 2, 5, 10, 20,
    50... epochs, about eight in all), room for `epochs` (the last seen or planned), so a
    one-epoch series is not a lone dot at 0."""
    epochs = max(int(epochs), 1)
    step = next(s for s in _nice_steps() if s * TICKS >= epochs)
    pad = 0.4  # under half an epoch: the axis never reaches 0
    ticks = sorted({1, *range(step, epochs + 1, step)})
    return {
        "range": [1 - pad, epochs + pad],
        "tickmode": "array",
        "tickvals": ticks,
        "ticktext": [str(t) for t in ticks],
        "title": {"text": extra.pop("title", "epoch")},
        **extra,
    }


TICKS = 8


def _nice_steps() -> Iterator[int]:
    scale = 1
    while True:
        yield from (scale, 2 * scale, 5 * scale)
        scale *= 10


def number_format(*, percent: bool) -> str:
    """A metric value's d3 format in hovers and labels: fractions as percentages (as in
    every table), other values with four significant digits."""
    return ".1%" if percent else ".4g"


def value_axis(*, percent: bool, **extra: Any) -> dict:
    """A metric axis; fractions (accuracy) read as percentages, as in every table."""
    axis = {"tickformat": ".1~%", "hoverformat": ".1%"} if percent else {}
    return {**axis, **extra}


def heatmap_layout(title: str | None, *, height: int, left: int = 90) -> dict:
    """Rows true (top to bottom), columns predicted."""
    layout = {
        "height": height,
        "margin": {"l": left, "r": 16, "t": 36 if title else 20, "b": 80},
        "xaxis": {"title": {"text": "predicted"}, "side": "bottom"},
        "yaxis": {"title": {"text": "true"}, "autorange": "reversed"},
    }
    if title:
        layout["title"] = {"text": title, "font": {"size": 14}}
    return layout


# A confusion heatmap stays readable (and a page stays small) however many classes a data
# set has: up to MAX_HEATMAP_CLASSES classes are drawn, counts written in the cells up to
# MAX_CELL_TEXT_CLASSES.
MAX_HEATMAP_CLASSES = 40
MAX_CELL_TEXT_CLASSES = 20


def heatmap_classes(
    matrices: Sequence[Sequence[Sequence[float]]], limit: int = MAX_HEATMAP_CLASSES
) -> list[int]:
    """Indices of the classes a confusion heatmap shows: all of them up to `limit`, else
    the `limit` classes with the most errors (off-diagonal cells of their row and column,
    summed over the matrices), in class order."""
    size = len(matrices[0]) if matrices else 0
    if size <= limit:
        return list(range(size))
    errors = [0.0] * size
    for matrix in matrices:
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                if i != j:
                    errors[i] += abs(value)
                    errors[j] += abs(value)
    worst = sorted(range(size), key=lambda c: (-errors[c], c))[:limit]
    return sorted(worst)


def submatrix(matrix: list[list[float]], keep: list[int]) -> list[list[float]]:
    """The rows and columns of `keep` only."""
    return [[matrix[i][j] for j in keep] for i in keep]


def classes_note(shown: int, total: int) -> str:
    """Said under a heatmap that shows only some classes ('' when it shows all)."""
    if shown >= total:
        return ""
    return f"{shown} of {total:,} classes: those with the most errors"
