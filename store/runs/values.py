"""A run's parameters as kept, indexed rows (run_params), so the runs table sorts and
filters by any parameter (`param.<name>`) a page at a time, whatever the store holds.

Nested parameters are flattened with dots ({"augmentation": {"zoom_range": 0.1}} ->
"augmentation.zoom_range"). A number is kept in num_value; a flag in both (1/0 and
"true"/"false"); text and lists (as JSON) in text_value, cut to TEXT_CHARS; a parameter
left at None is no row (it reads as absent). Metrics need no copy: `metric.<key>` reads
metric_summaries through its (key, kept value, run) index (models.kept_value_of).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypedDict

from sqlalchemy import insert
from sqlalchemy.orm import Session

from store.runs.models import RunParam

TEXT_CHARS = 200  # run_params.text_value's width
KEY_CHARS = 200  # run_params.key's width: a longer flattened name is not kept
MAX_PARAMS = 1000  # rows kept per run (a kind's parameters are a few dozen)

ValueType = Literal["number", "text", "bool"]


class ParamRow(TypedDict):
    """One run_params row as inserted."""

    run_id: int
    key: str
    num_value: float | None
    text_value: str | None


def flatten(params: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every leaf of `params`; an empty dict is a leaf."""
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{path}.")
        else:
            yield path, value


def cell(value: Any) -> tuple[float | None, str | None] | None:
    """(num_value, text_value) of one parameter value; None: no row (None, NaN)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return (1.0 if value else 0.0), ("true" if value else "false")
    if isinstance(value, int | float):
        number = float(value)
        return None if math.isnan(number) or math.isinf(number) else (number, None)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return None, text[:TEXT_CHARS]


def type_of(num_value: float | None, text_value: str | None) -> ValueType:
    """What a kept value is: a flag has both, a number only num_value."""
    if num_value is not None:
        return "bool" if text_value is not None else "number"
    return "text"


def rows_of(run_id: int, params: Mapping[str, Any] | None) -> list[ParamRow]:
    """The run_params rows of a run's parameters (at most MAX_PARAMS)."""
    rows: list[ParamRow] = []
    for key, value in flatten(params or {}):
        kept = cell(value)
        if kept is None or len(key) > KEY_CHARS:
            continue
        rows.append({"run_id": run_id, "key": key, "num_value": kept[0], "text_value": kept[1]})
        if len(rows) >= MAX_PARAMS:
            break
    return rows


def keep_params(session: Session, run_id: int, params: Mapping[str, Any] | None) -> None:
    """Write a new run's parameter rows (store.runs.service.create_run)."""
    rows = rows_of(run_id, params)
    if rows:
        session.execute(insert(RunParam), rows)
