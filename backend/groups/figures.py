"""A study's validation curves: per arm, the mean over seeds and the min–max band."""

from __future__ import annotations

import numpy as np

from backend import plotting
from backend.compare.figures import LAYOUT

# Baseline grey, treatment green: the same two colours on every study.
ROLE_COLORS = {"baseline": "#57606a", "treatment": "#1a7f37"}


def band(per_seed: list[list]) -> list[dict]:
    """Mean, min and max over seeds at each epoch (seeds that stopped early drop out)."""
    by_step: dict[int, list[float]] = {}
    for points in per_seed:
        for step, value in points:
            by_step.setdefault(step, []).append(value)
    return [
        {
            "step": step,
            "mean": float(np.mean(values)),
            "low": min(values),
            "high": max(values),
            "n": len(values),
        }
        for step, values in sorted(by_step.items())
    ]


def bands(title: str, arms: list[dict], percent: bool = False) -> dict:
    """One figure: arms are {"label", "role", "points"} with points from band()."""
    data = []
    scale = 100.0 if percent else 1.0
    for arm in arms:
        points = arm["points"]
        if not points:
            continue
        color = ROLE_COLORS[arm["role"]]
        steps = [p["step"] for p in points]
        data.append(
            {
                "type": "scatter",
                "x": steps + steps[::-1],
                "y": [p["high"] * scale for p in points] + [p["low"] * scale for p in points][::-1],
                "mode": "lines",
                "fill": "toself",
                "fillcolor": _alpha(color, 0.18),
                "line": {"width": 0},
                "hoverinfo": "skip",
                "name": f"{arm['label']}: min–max over seeds",
            }
        )
        data.append(
            {
                "type": "scatter",
                "x": steps,
                "y": [p["mean"] * scale for p in points],
                "customdata": [p["n"] for p in points],
                "mode": "lines+markers" if len(points) < 40 else "lines",
                "line": {"color": color, "width": 2.5},
                "name": f"{arm['label']}: mean",
                "hovertemplate": "epoch %{x}<br>mean %{y:.3f}<br>%{customdata} seeds"
                "<extra></extra>",
            }
        )
    layout = {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {"title": {"text": "epoch"}},
        **LAYOUT,
    }
    return plotting.figure(data, layout)


def _alpha(hex_color: str, alpha: float) -> str:
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"
