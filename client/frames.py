"""Tables as pandas DataFrames, read from what the server already writes.

`runs_frame` reads the runs table's CSV export (backend/runs/table_csv.py) as it is, so
the client's wide table has exactly the export's columns and can never drift from it:
the table's built-in fields, then `param.<name>` per job parameter and `metric.<key>` per
metric (its kept value). Only the export's spreadsheet guards are undone: a text cell
that starts with = + - @ (a formula to a spreadsheet) was written behind an apostrophe.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FILTERS = ("kind", "status", "group_id", "tag", "dataset", "q", "archived", "filter")
ORDERING = ("sort", "order")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what the export guards (table_csv.py)
TIMES = ("created_at", "started_at", "finished_at")
YES_NO = {"yes": True, "no": False}


def query(filters: Mapping[str, Any]) -> dict[str, Any]:
    """The query string of a runs list; an unknown filter is refused here, by name."""
    unknown = sorted(set(filters) - {*FILTERS, *ORDERING})
    if unknown:
        raise TypeError(f"unknown filter {', '.join(unknown)}; known: {', '.join(FILTERS)}")
    return {key: str(value) for key, value in filters.items() if value is not None}


def runs_frame(text: str) -> pd.DataFrame:
    """The runs CSV as a DataFrame: one row per run, the export's columns, times parsed,
    `archived` a bool, `tags` a list."""
    import pandas as pd

    frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(_unguarded)
    for column in TIMES:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["archived"] = frame["archived"].map(YES_NO).astype(bool)
    frame["tags"] = frame["tags"].map(
        lambda cell: cell.split("; ") if isinstance(cell, str) else []
    )
    return frame


def _unguarded(cell: object) -> object:
    """A text cell as stored: the export's leading apostrophe before a formula removed."""
    if isinstance(cell, str) and cell[:1] == "'" and cell[1:2] in FORMULA_START and cell[1:2]:
        return cell[1:]
    return cell
