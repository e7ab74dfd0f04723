"""The runs table as CSV: every run the filters match, in the table's order, bounded,
streamed a batch at a time (backend/exports.py).

Every column of the table is written whatever the column picker shows (a spreadsheet
hides columns better than a page can), and the table is wide: one column per job
parameter (`param.<name>`) and per metric (`metric.<key>`, its kept value) the store holds
(the column catalogue's, views.catalogue), never all parameters packed in one cell.
Cells are quoted by Python's csv module (RFC 4180); text a spreadsheet would run as a
formula (starting with = + - @, a tab or a carriage return) gets a leading apostrophe, as
OWASP advises for CSV injection.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.orm import Session

from backend.runs import views
from store.db import session_scope
from store.errors import InvalidRequest
from store.runs.schemas import RunFilter

MAX_ROWS = 10_000
CHUNK = 500  # runs whose summaries are read in one query (SQLite caps bound parameters)
FIRST_CHUNK = 50  # the first answer as soon as one page's rows are read
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
FIELDS = (
    "id",
    "name",
    "kind",
    "status",
    "archived",
    "dataset",
    "tags",
    "best_metric",
    "best_value",
    "best_epoch",
    "test_accuracy",
    "balanced_accuracy",
    "parent_run_id",
    "parent_name",
    "group_id",
    "group_name",
    "study_name",
    "launched_by",
    "created_at",
    "started_at",
    "finished_at",
    "duration_seconds",
    "error",
)


@dataclass(frozen=True)
class Export:
    """What an export writes: these runs, in order, with these param./metric. columns."""

    ids: list[int]
    columns: list[str]


def check(session: Session, *, run_filter: RunFilter, sort: str, order: str) -> Export:
    """The runs to export, in order, and the wide columns, or InvalidRequest when more than
    MAX_ROWS match (asked before the answer starts, so the refusal is a plain 422)."""
    ids = views.ordered_ids(
        session, run_filter=run_filter, sort=sort, order=order, limit=MAX_ROWS + 1
    )
    if len(ids) > MAX_ROWS:
        raise InvalidRequest(
            "limit", f"more than {MAX_ROWS:,} runs match: narrow the filters to export them"
        )
    columns = [c["key"] for c in views.catalogue(session)["columns"] if c["group"] != "builtin"]
    return Export(ids, columns)


def chunks(export: Export) -> Iterator[str]:
    """The CSV text of these runs: a first batch of FIRST_CHUNK rows (the first answer costs
    what one page of the table costs), then CHUNK rows at a time: each batch is read in a
    short session of its own, so neither memory nor a read transaction grows with the
    export (a run deleted meanwhile is left out)."""
    out = io.StringIO()
    writer = csv.writer(out)  # QUOTE_MINIMAL, "\r\n" line ends: RFC 4180
    writer.writerow([*FIELDS, *export.columns])
    ids = export.ids
    bounds = [0, *range(FIRST_CHUNK, len(ids), CHUNK), len(ids)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        if start >= end:
            continue
        with session_scope() as session:
            batch = views.by_ids(session, ids[start:end])
            cells = views.values_of(session, [run.id for run, _ in batch], export.columns)
            for row in views.rows_of(session, batch):
                wide = [cells[row["id"]].get(key) for key in export.columns]
                writer.writerow([safe(value) for value in [*record(row), *wide]])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    if out.tell():
        yield out.getvalue()


def export(session: Session, *, run_filter: RunFilter, sort: str, order: str) -> str:
    """The whole CSV text at once (for tests and scripts; the route streams chunks())."""
    return "".join(chunks(check(session, run_filter=run_filter, sort=sort, order=order)))


def record(row: dict) -> list:
    """One table row as the CSV's cells, in FIELDS order."""
    best = row["best"] or {}
    group = row["group"] or {}
    return [
        row["id"],
        row["name"],
        row["kind"],
        row["status"],
        "yes" if row["archived"] else "no",
        row["dataset"],
        "; ".join(row["tags"]),
        best.get("label"),
        best.get("value"),
        best.get("epoch"),
        row["test_accuracy"],
        row["balanced_accuracy"],
        row["parent_run_id"],
        row["parent_name"],
        row["group_id"],
        group.get("name"),
        row["study_name"],
        row["launched_by"],
        row["created_at"],
        row["started_at"],
        row["finished_at"],
        row["duration_seconds"],
        row["error"],
    ]


def safe(value: object) -> str | int | float:
    """A cell as written: numbers as numbers, None empty, text a spreadsheet would run as a
    formula behind an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text
