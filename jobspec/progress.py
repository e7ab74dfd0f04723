"""How much of a run is done, from the progress fields its worker stores (stage_index of
stage_count, epoch of epochs, step of steps; `closing`: a stage after the planned ones, a
pretrain's probe, during which the bar stays full). One rule for the runs table, the run
page's JSON and the Python client. Pure: standard library only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def fraction(progress: Mapping[str, Any] | None) -> float:
    """0..1 across the run's stages (0 before any progress was stored)."""
    p = progress or {}
    if not p:
        return 0.0
    if p.get("closing"):
        return 1.0
    epochs, steps = max(int(p.get("epochs") or 1), 1), max(int(p.get("steps") or 1), 1)
    within = ((int(p.get("epoch") or 1) - 1) + int(p.get("step") or 0) / steps) / epochs
    count = max(int(p.get("stage_count") or 1), 1)
    index = int(p.get("stage_index") or 1)
    return max(0.0, min(1.0, ((index - 1) + within) / count))
