"""Shorten long metric series before they reach the browser, keeping their shape.

Bucketed min/max (the M4 idea): the interior is cut into equal buckets and each keeps its
lowest and highest point, so spikes survive; the first and last points are always kept,
and with them the global minimum and maximum (each is its bucket's min or max).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def downsample(
    xs: Sequence[float], ys: Sequence[float], max_points: int
) -> tuple[list[float], list[float]]:
    """At most max_points (>= 4) of (xs, ys), in order, first/last/min/max included."""
    n = len(ys)
    if n <= max_points:
        return list(xs), list(ys)
    max_points = max(max_points, 4)
    buckets = (max_points - 2) // 2
    keep = {0, n - 1}
    interior = n - 2
    for b in range(buckets):
        start = 1 + (b * interior) // buckets
        stop = 1 + ((b + 1) * interior) // buckets
        keep.update(_min_max(ys, start, stop))
    index = sorted(keep)
    return [xs[i] for i in index], [ys[i] for i in index]


def _min_max(ys: Sequence[float], start: int, stop: int) -> tuple[int, ...]:
    """Indices of the lowest and highest finite value in ys[start:stop] (NaNs skipped)."""
    low = high = None
    for i in range(start, stop):
        value = ys[i]
        if value is None or math.isnan(value):
            continue
        if low is None or value < ys[low]:
            low = i
        if high is None or value > ys[high]:
            high = i
    if low is None or high is None:  # both or neither: no finite value
        return (start,) if start < stop else ()
    return (low, high)
