"""How pages write durations, times and fractions; Jinja filters `duration`, `when` and
`pct` (registered in backend/web.py), mirrored by static/js/dom.js's `dom.fmt`
(tests/web/test_dom_js.py)."""

from __future__ import annotations

from datetime import datetime

from store.timeutil import aware


def fmt_duration(seconds: float | None) -> str:
    """1h 02m, 3m 05s, 42s; an en dash when unknown."""
    if not isinstance(seconds, int | float) or seconds != seconds:  # None, undefined, NaN
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def fmt_pct(value: float | None, places: int = 1) -> str:
    """A fraction (accuracy, recall, F1) as a percentage: 0.212 -> '21.2%', as every page
    and chart writes one (dom.js `fmt.pct`); an en dash when unknown."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        return "–"
    return f"{value * 100:.{places}f}%"


def fmt_when(moment: str | datetime | None) -> str:
    """An ISO string or datetime as 'YYYY-MM-DD HH:MM' UTC (the browser shows local time)."""
    if not moment:
        return "–"
    text = moment if isinstance(moment, str) else aware(moment).isoformat()
    return text[:16].replace("T", " ")


def flatten(params: dict, prefix: str = "") -> dict:
    """Nested parameters as dotted keys: {"ae01": {"epochs": 3}} -> {"ae01.epochs": 3}."""
    out = {}
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def readable(value: object) -> str:
    """A parameter's value as the run page writes it: lists joined, None as 'default'."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "default" if value is None else str(value)
