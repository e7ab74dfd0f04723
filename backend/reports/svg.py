"""Line charts as inline SVG, drawn on the server: the report's curves read the same on the
page, in print and in the exported file, which opens offline with no script at all.

No `xmlns` attribute: SVG inside HTML needs none, and the export holds no outside address.
Every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from html import escape

from markupsafe import Markup

from backend.formatting import fmt_pct
from backend.runs.downsample import downsample
from backend.runs.figures import PALETTE

MAX_POINTS = 300  # per line; longer series are shortened keeping their extremes
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 30, 40
LEGEND_ROW, LEGEND_WIDTH, LEGEND_GAP = 18, 190, 10


def nice_ticks(low: float, high: float, count: int = 5, *, min_step: float = 0) -> list[float]:
    """About `count` round values covering low..high (1, 2, 2.5 or 5 times a power of 10),
    at least min_step apart (1 for epochs)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        low, high = low - 0.5, high + 0.5
    raw = max((high - low) / count, min_step)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if min_step >= 1:
        step = max(1.0, round(step))
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value < high + step * 0.999:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float, *, percent: bool = False) -> str:
    if percent:  # fractions read as percentages, as on every page (21.2%, 25%)
        return fmt_pct(value, places=0 if float(value * 100).is_integer() else 1)
    return f"{value:.4g}"


def _value(value: float, *, percent: bool) -> str:
    """A point's value as the tables write it: 21.2% or 0.04123."""
    return fmt_pct(value) if percent else f"{value:.4g}"


def _finite(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    return [
        (float(x), float(y))
        for x, y in points
        if y is not None and math.isfinite(float(x)) and math.isfinite(float(y))
    ]


def line_chart(
    series: list[dict],
    *,
    title: str,
    y_label: str,
    x_label: str = "epoch",
    percent: bool = False,
    width: int = 620,
    height: int = 240,
) -> Markup:
    """series: [{"name", "points": [(x, y), ...], "dash": bool, "group": int}]; one colour
    per group (train solid, validation dashed share one). '' when nothing is drawable.
    percent: the values are fractions (accuracy), labelled as percentages."""
    lines = []
    for line in series:
        points = _finite(line.get("points") or [])
        if points:
            xs, ys = downsample([p[0] for p in points], [p[1] for p in points], MAX_POINTS)
            lines.append({**line, "points": list(zip(xs, ys, strict=True))})
    if not lines:
        return Markup("")
    all_x = [x for line in lines for x, _ in line["points"]]
    all_y = [y for line in lines for _, y in line["points"]]
    x_ticks = nice_ticks(min(all_x), max(all_x), min_step=1 if x_label == "epoch" else 0)
    y_ticks = nice_ticks(min(all_y), max(all_y))
    legend_cols = max(1, (width - LEFT) // LEGEND_WIDTH)
    legend_rows = math.ceil(len(lines) / legend_cols)
    plot_h = height - TOP - BOTTOM
    total_h = height + LEGEND_GAP + legend_rows * LEGEND_ROW
    plot_w = width - LEFT - RIGHT

    def sx(x: float) -> float:
        return LEFT + (x - x_ticks[0]) / ((x_ticks[-1] - x_ticks[0]) or 1) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y - y_ticks[0]) / ((y_ticks[-1] - y_ticks[0]) or 1) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {total_h}" width="{width}" height="{total_h}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for y in y_ticks:
        parts.append(
            f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
            f'class="grid-line"/><text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" class="tick" '
            f'text-anchor="end">{_label(y, percent=percent)}</text>'
        )
    for x in x_ticks:
        parts.append(
            f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 16}" class="tick" '
            f'text-anchor="middle">{_label(x)}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h + 32}" class="axis" '
        f'text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="12" y="{TOP + plot_h / 2:.1f}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{escape(y_label)}</text>'
    )
    for index, line in enumerate(lines):
        parts.append(_polyline(line, sx, sy, percent=percent))
        row, col = divmod(index, legend_cols)
        top = height + LEGEND_GAP + row * LEGEND_ROW
        parts.append(_legend_entry(line, LEFT + col * LEGEND_WIDTH, top))
    parts.append("</svg>")
    return Markup("".join(parts))


def _colour(line: dict) -> str:
    return PALETTE[int(line.get("group", 0)) % len(PALETTE)]


def _polyline(
    line: dict, sx: Callable[[float], float], sy: Callable[[float], float], *, percent: bool
) -> str:
    coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line["points"])
    dash = ' stroke-dasharray="5 3"' if line.get("dash") else ""
    shape = (
        f'<polyline points="{coords}" fill="none" stroke="{_colour(line)}" '
        f'stroke-width="1.8"{dash}>'
        f"<title>{escape(str(line['name']))}</title></polyline>"
    )
    if len(line["points"]) == 1:  # one epoch: a dot with its value written beside it
        x, y = line["points"][0]
        shape += (
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{_colour(line)}"/>'
            f'<text x="{sx(x) + 6:.1f}" y="{sy(y) + 4:.1f}" class="tick value">'
            f"{escape(_value(y, percent=percent))}</text>"
        )
    return shape


def _legend_entry(line: dict, x: float, y: float) -> str:
    dash = ' stroke-dasharray="5 3"' if line.get("dash") else ""
    name = str(line["name"])
    shown = name if len(name) <= 26 else name[:25] + "…"
    return (
        f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{_colour(line)}" '
        f'stroke-width="2"{dash}/><text x="{x + 24}" y="{y + 4}" class="legend">'
        f"{escape(shown)}</text>"
    )
