"""Read-side rows for the runs table: one query for the page, one for its summaries.

Each row carries what the list shows without another round trip: data set name, key
parameters, the best validation score and its epoch, test scores, lineage, duration, times
and live progress.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import Enum
from fnmatch import fnmatchcase
from typing import Any, TypeVarTuple

from sqlalchemy import (
    Row,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from backend.runs import best_sort, dataset_sort, duration_sort, liveness
from jobspec import ablations, kinds
from jobspec import progress as run_progress
from jobspec.status import RunStatus
from store import clock
from store.datasets.models import DatasetRecord
from store.errors import InvalidRequest
from store.runs import changes as run_changes
from store.runs import search
from store.runs import service as runs_service
from store.runs import values as run_values
from store.runs.models import MetricSummary, Run, RunGroup, RunParam, kept_value_of
from store.runs.schemas import RunFilter
from store.timeutil import aware

Cols = TypeVarTuple("Cols")  # a sorted select() returns what it selected
SORTS = ("created", "duration", "best", "name", "priority")  # the sorts of old callers

# The columns a user may show or hide (the picker), in table order; the row's check box,
# id, name and status always show. Jinja and static/js/runs_table.js draw each by its key.
# Any parameter or metric is a column too: `param.<name>` and `metric.<key>` (catalogue()).
COLUMNS = (
    {"key": "kind", "label": "Kind", "default": True, "type": "text"},
    {"key": "dataset", "label": "Data set", "default": True, "type": "text"},
    {"key": "params", "label": "Key params", "default": True, "type": "text"},
    {"key": "best", "label": "Best", "default": True, "type": "number"},
    {"key": "test_accuracy", "label": "Test acc", "default": False, "type": "number"},
    {"key": "balanced_accuracy", "label": "Balanced acc", "default": False, "type": "number"},
    {"key": "tags", "label": "Tags", "default": True, "type": "text"},
    {"key": "parent", "label": "Parent", "default": False, "type": "number"},
    {"key": "group", "label": "Study / group", "default": False, "type": "number"},
    {"key": "launched_by", "label": "Launched by", "default": False, "type": "text"},
    {"key": "priority", "label": "Priority", "default": True, "type": "number"},
    {"key": "duration", "label": "Duration", "default": True, "type": "number"},
    {"key": "created", "label": "Created", "default": True, "type": "text"},
    {"key": "finished", "label": "Finished", "default": True, "type": "text"},
)
BUILTIN_SORTS: tuple[str, ...] = ("id", "name", "status", *(str(c["key"]) for c in COLUMNS))
PARAM, METRIC = "param.", "metric."
MAX_COLUMN_KEY = 200  # a param./metric. key (run_params.key, metric_summaries.key)
MAX_VALUE_COLUMNS = 50  # param./metric. columns one table request may ask for
MAX_CATALOGUE = 500  # param keys, and metric keys, the column catalogue lists at most
# The total is counted up to this many runs: past it, "total" is this and
# "total_is_lower_bound" true (counting every match is what would grow with the store:
# a filter's clauses are checked for every run counted).
TOTAL_CAP = 1_000
MAX_OFFSET = 10_000  # `offset` paging (older callers; `cursor` pages on without a bound)
MAX_CURSOR_CHARS = 2000
# Built-in columns that may be null and are paged as a parameter is (_by_value): the runs
# with a value by their (column, id) index, then the runs without one by id.
PHASED: dict[str, Any] = {
    "finished": Run.finished_at,
    "launched_by": Run.launched_by,
    "parent": Run.parent_run_id,
    "group": Run.group_id,
}
# ... and the numbers of the run's stored evaluation (an expression index each).
PHASED_SORTS = (*PHASED, "test_accuracy", "balanced_accuracy")


def check_sort(sort: str) -> str:
    """A sort key any column may be: a built-in one, `param.<name>` or `metric.<key>`;
    InvalidRequest("sort") otherwise."""
    for prefix in (PARAM, METRIC):
        named = 0 < len(sort) - len(prefix) <= MAX_COLUMN_KEY
        if sort.startswith(prefix) and named and search.unprintable(sort) is None:
            return sort
    if sort in BUILTIN_SORTS:
        return sort
    raise InvalidRequest(
        "sort", f"no such column; one of {', '.join(BUILTIN_SORTS)}, param.<name>, metric.<key>"
    )


def known_sort(sort: str) -> str:
    """`sort` when a column may sort by it, else the default (a page never refuses)."""
    try:
        return check_sort(sort)
    except InvalidRequest:
        return "created"


def check_columns(columns: str | None) -> list[str]:
    """The param./metric. columns asked for (comma-separated; built-in keys are always in
    a row), or InvalidRequest("columns")."""
    keys = [key.strip() for key in (columns or "").split(",") if key.strip()]
    extra = [key for key in dict.fromkeys(keys) if key.startswith((PARAM, METRIC))]
    if len(extra) > MAX_VALUE_COLUMNS:
        raise InvalidRequest(
            "columns", f"at most {MAX_VALUE_COLUMNS} param./metric. columns at once"
        )
    for key in extra:
        if len(key.split(".", 1)[1]) > MAX_COLUMN_KEY or key in (PARAM, METRIC):
            raise InvalidRequest("columns", f"a column key is at most {MAX_COLUMN_KEY} characters")
        if search.unprintable(key) is not None:
            raise InvalidRequest("columns", "a column key holds a character no key may")
    return extra


def table(
    session: Session,
    *,
    run_filter: RunFilter,
    sort: str = "created",
    order: str = "desc",
    limit: int = 50,
    offset: int = 0,
    cursor: str | None = None,
    columns: Sequence[str] = (),
) -> dict:
    """One page of table rows, filtered and sorted by any column, with the total count (up
    to TOTAL_CAP) and the cursor of the next page (keyset paging: a page costs one page,
    whatever the store holds; `offset` is kept for older callers)."""
    sort = check_sort(sort)
    descending = order != "asc"
    base: Select[*tuple[Any, ...]] = runs_service.filtered(
        select(Run, DatasetRecord.name).join(DatasetRecord, DatasetRecord.id == Run.dataset_id),
        run_filter,
    )
    position = _read_cursor(cursor, sort, order) if cursor else None
    if position is not None and "off" in position:
        offset, position = int(position["off"]), None
    found = _page(session, base, sort, descending, limit + 1, offset, position)
    rows, more = found[:limit], len(found) > limit
    total, capped = _total(session, run_filter)
    items = rows_of(session, [(row[0], row[1]) for row in rows])  # type: ignore[misc]
    if columns:
        cells = values_of(session, [row[0].id for row in rows], columns)
        for item in items:
            item["values"] = cells.get(item["id"], {})
    next_cursor = _cursor(sort, order, rows[-1], offset + limit) if more and rows else None
    return {
        "items": items,
        "total": total,
        "total_is_lower_bound": capped,
        "limit": limit,
        "offset": offset,
        "sort": sort,
        "order": "desc" if descending else "asc",
        "next_cursor": next_cursor,
    }


def page_of(session: Session, *, cursor: str | None, **asked: Any) -> dict:
    """table() for a page a person opened: a cursor of another sort (an old link) starts
    from the first page instead of refusing."""
    try:
        return table(session, cursor=cursor, **asked)
    except InvalidRequest as err:
        if err.field != "cursor":
            raise
        return table(session, cursor=None, **asked)


def _total(session: Session, run_filter: RunFilter) -> tuple[int, bool]:
    """How many runs match, counted up to TOTAL_CAP (and whether there are more)."""
    ids = runs_service.filtered(select(Run.id), run_filter)  # a run always has a data set
    count = session.scalar(select(func.count()).select_from(ids.limit(TOTAL_CAP + 1).subquery()))
    count = count or 0
    return min(count, TOTAL_CAP), count > TOTAL_CAP


def ordered_ids(
    session: Session, *, run_filter: RunFilter, sort: str, order: str, limit: int
) -> list[int]:
    """Ids of the runs `run_filter` asks for, sorted as the table is (ids only: an export
    reads the rows themselves a batch at a time, with by_ids)."""
    base: Select[*tuple[Any, ...]] = runs_service.filtered(
        select(Run.id).join(DatasetRecord, DatasetRecord.id == Run.dataset_id), run_filter
    )
    rows = _page(session, base, check_sort(sort), order != "asc", limit, 0, None)
    return [row[0] for row in rows]


def by_ids(session: Session, ids: Sequence[int]) -> list[Row[Run, str]]:
    """(Run, data set name) of these runs, in the order of `ids` (runs gone are left out)."""
    query = select(Run, DatasetRecord.name).join(DatasetRecord, DatasetRecord.id == Run.dataset_id)
    found = {row[0].id: row for row in session.execute(query.where(Run.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def rows_of(session: Session, rows: Sequence[tuple[Run, str]]) -> list[dict]:
    """Table rows of (Run, data set name) pairs, with their summaries and lineage names."""
    summaries = _summaries(session, [run.id for run, _ in rows])
    links = _links(session, [run for run, _ in rows])
    now = clock.now(session)  # running durations: to now by the clock that stamped the start
    etas = liveness.etas(session, [run for run, _ in rows], now)  # the panel's figures
    return [
        row_of(run, name, summaries.get(run.id, {}), now, links, etas.get(run.id))
        for run, name in rows
    ]


def _links(session: Session, runs: list[Run]) -> dict:
    """Names of the parent runs and groups the rows point at."""
    parents = {run.parent_run_id for run in runs if run.parent_run_id}
    groups = {run.group_id for run in runs if run.group_id}
    names = select(Run.id, Run.name).where(Run.id.in_(parents))
    group_rows = select(RunGroup.id, RunGroup.name, RunGroup.kind).where(RunGroup.id.in_(groups))
    return {
        "runs": dict(session.execute(names).all()) if parents else {},
        "groups": {i: (n, k) for i, n, k in session.execute(group_rows)} if groups else {},
    }


# --- Sorting by any column, a page at a time ---
#
# A sort is a list of keys (expression, descending), the run's id last so the order is
# total. A nullable key is preceded by "is it null" (ascending), so runs without a value
# come last in either direction. The next page starts after the last row's keys (keyset
# paging): with an index on the keys, a page costs one page.
#
# A sort by a parameter or a metric walks its index (run_params (key, value, run_id),
# metric_summaries (key, kept value, run_id)) for the runs that have a value, then the
# runs that have none by id: two phases, "v" then "n", named in the cursor.

Key = tuple[Any, bool]  # (a column or an expression, descending)


def _page(
    session: Session,
    base: Select[*tuple[Any, ...]],
    sort: str,
    descending: bool,
    limit: int,
    offset: int,
    position: dict | None,
) -> list[Row[Any]]:
    """Rows of `base` (its columns, then the sort's keys) in the sort's order: `limit`
    from `offset`, or after `position` (a cursor's)."""
    if (sort.startswith((PARAM, METRIC)) or sort in PHASED_SORTS) and offset == 0:
        return _by_value(session, base, sort, descending, limit, position)
    if sort == "duration" and offset == 0:
        return duration_sort.page(session, base, descending, limit, position)
    if sort == "dataset" and offset == 0:  # a data set at a time, on (dataset_id, id)
        return dataset_sort.page(session, base, descending, limit, position)
    if sort == "best":  # the best kept on each run, a group at a time
        if offset == 0:
            return best_sort.page(session, base, descending, limit, position)
        query = best_sort.ordered(base, descending)
        return list(session.execute(query.limit(limit).offset(offset)).all())
    query, keys = _keyed(session, base, sort, descending)
    query = query.add_columns(*(expr.label(f"k{i}") for i, (expr, _) in enumerate(keys)))
    if position is not None:
        query = query.where(_after(keys, position.get("v") or []))
    order = [expr.desc() if desc else expr.asc() for expr, desc in keys]
    return list(session.execute(query.order_by(*order).limit(limit).offset(offset)).all())


def _keyed(
    session: Session, query: Select[*tuple[Any, ...]], sort: str, descending: bool
) -> tuple[Select[*tuple[Any, ...]], list[Key]]:
    """The query (joined to what the sort reads) and the sort's keys, over all runs."""
    if sort.startswith((PARAM, METRIC)):
        value: ColumnElement[Any]
        alias: Any
        if sort.startswith(METRIC):
            alias = aliased(MetricSummary)
            on = (alias.run_id == Run.id) & (alias.key == sort[len(METRIC) :])
            value = kept_value_of(alias)
        else:
            alias = aliased(RunParam)
            column = _param_column(session, sort[len(PARAM) :], alias)
            on = (alias.run_id == Run.id) & (alias.key == sort[len(PARAM) :])
            on = on & column.is_not(None)
            value = column
        query = query.outerjoin(alias, on)
        return query, [*_nullable(value, descending), (Run.id, descending)]
    if sort == "created":
        return query, [(Run.created_at, descending), (Run.id, descending)]
    if sort == "dataset":  # the keys dataset_sort's walk orders by
        return query, [(key, descending) for key in dataset_sort.order_keys()]
    expr, nullable = _builtin(session, sort)
    keys = _nullable(expr, descending) if nullable else [(expr, descending)]
    return query, [*keys, (Run.id, descending)]


def _builtin(session: Session, sort: str) -> tuple[ColumnElement[Any], bool]:
    """A built-in column's sort expression and whether it may be null."""
    if sort in ("test_accuracy", "balanced_accuracy"):
        return _result_number(session, sort), True
    columns: dict[str, tuple[Any, bool]] = {
        "id": (Run.id, False),
        "name": (func.lower(Run.name), False),
        "status": (Run.status, False),
        "kind": (Run.kind, False),
        "params": (run_changes.text_sort_key(Run.params), False),
        "tags": (run_changes.text_sort_key(Run.tags), False),
        "parent": (Run.parent_run_id, True),
        "group": (Run.group_id, True),
        "launched_by": (Run.launched_by, True),
        "priority": (Run.priority, False),
        "duration": (_duration_expr(session), True),
        "finished": (Run.finished_at, True),
    }
    return columns[sort]


def _result_number(session: Session, name: str) -> ColumnElement[Any]:
    """A number of the run's stored evaluation (result.evaluation.<name>), as its index is
    written (store/runs/changes.py)."""
    name = "accuracy" if name == "test_accuracy" else name
    return run_changes.evaluation_number(name, session.get_bind().dialect.name)


def _nullable(expr: ColumnElement[Any], descending: bool) -> list[Key]:
    missing = case((expr.is_(None), 1), else_=0)
    return [(missing, False), (expr, descending)]


def _after(keys: list[Key], last: list[Any]) -> ColumnElement[bool]:
    """Rows after `last` (the previous page's last keys) in the order of `keys`."""
    if len(last) != len(keys):
        raise InvalidRequest("cursor", "not a cursor of this sort: start from the first page")
    ors: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for (expr, desc), value in zip(keys, last, strict=True):
        if value is not None:
            ors.append(and_(*equal, expr < value if desc else expr > value))
            equal.append(expr == value)
        else:
            equal.append(expr.is_(None))
    first, desc = keys[0]
    bound = last[0]
    condition = or_(*ors) if ors else false()
    if bound is not None:  # lets the database start the index walk at the previous page
        condition = and_(first <= bound if desc else first >= bound, condition)
    return condition


def _param_column(session: Session, key: str, alias: Any = RunParam) -> ColumnElement[Any]:
    """What a parameter sorts by: its number (numbers and flags) or its text."""
    numeric = session.scalar(select(func.max(RunParam.num_value)).where(RunParam.key == key))
    return alias.num_value if numeric is not None else alias.text_value


def _sorted_value(session: Session, sort: str) -> tuple[Any, Any, Any, Any]:
    """(value, its run id, "has a value", the table joined or None) of a paged sort."""
    if sort.startswith(METRIC):
        key = sort[len(METRIC) :]
        return (
            kept_value_of(MetricSummary),
            MetricSummary.run_id,
            MetricSummary.key == key,
            MetricSummary,
        )
    if sort.startswith(PARAM):
        key = sort[len(PARAM) :]
        value = _param_column(session, key)
        return value, RunParam.run_id, (RunParam.key == key) & value.is_not(None), RunParam
    value = PHASED[sort] if sort in PHASED else _result_number(session, sort)
    return value, Run.id, value.is_not(None), None


def _by_value(
    session: Session,
    base: Select[*tuple[Any, ...]],
    sort: str,
    descending: bool,
    limit: int,
    position: dict | None,
) -> list[Row[Any]]:
    """A page sorted by a parameter, a metric or a built-in column that may be null: the
    runs that have a value, walking its index, then (phase "n") the runs without one by id
    (for a built-in column, its (column, id) index again: `IS NULL` by id)."""
    value, owner, has_key, source = _sorted_value(session, sort)
    phase = (position or {}).get("p", "v")
    last = (position or {}).get("v") or []
    rows: list[Row[Any]] = []
    if phase == "v":
        keys: list[Key] = [(value, descending), (owner, descending)]
        joined = (
            base.where(has_key)
            if source is None
            else base.join(source, (owner == Run.id) & has_key)
        )
        query = joined.add_columns(case((value.is_(None), 1), else_=0).label("k0")).add_columns(
            value.label("k1"), owner.label("k2")
        )
        if position is not None:
            query = query.where(_after(keys, last[1:]))
        order = [
            value.desc() if descending else value.asc(),
            owner.desc() if descending else owner.asc(),
        ]
        rows = list(session.execute(query.order_by(*order).limit(limit)).all())
        if len(rows) >= limit:
            return rows
        last = []
    missing = (
        value.is_(None) if source is None else ~exists(select(1).where(owner == Run.id, has_key))
    )
    query = base.where(missing).add_columns(
        literal(1).label("k0"), null().label("k1"), Run.id.label("k2")
    )
    if phase == "n" and last:
        query = query.where(Run.id < last[-1] if descending else Run.id > last[-1])
    by_id = Run.id.desc() if descending else Run.id.asc()
    return rows + list(session.execute(query.order_by(by_id).limit(limit - len(rows))).all())


def _sorted(
    session: Session, query: Select[*tuple[Any, ...]], sort: str, order: str
) -> Select[*tuple[Any, ...]]:
    """`query` (over Run) in the table's order (every row: exports and old callers)."""
    descending = order != "asc"
    if sort == "best":
        return _by_best(query, descending, _byte_ordered(session))
    query, keys = _keyed(session, query, check_sort(sort), descending)
    return query.order_by(*(expr.desc() if desc else expr.asc() for expr, desc in keys))


# --- Cursors: opaque to clients, the last row's keys (or an offset) ---


def _cursor(sort: str, order: str, row: Row[Any], offset: int) -> str:
    keys = [_jsonable(value) for name, value in row._mapping.items() if _is_key(name)]
    payload: dict[str, Any] = {"s": sort, "o": order, "v": keys}
    if sort.startswith((PARAM, METRIC)) or sort in PHASED_SORTS:
        payload["p"] = "v" if keys and keys[0] == 0 else "n"
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _is_key(name: object) -> bool:
    return isinstance(name, str) and name[:1] == "k" and name[1:].isdigit()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": aware(value).isoformat()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):  # PostgreSQL's extract(epoch ...)
        return float(value)
    return value


def _read_cursor(cursor: str, sort: str, order: str) -> dict:
    """A cursor's position, or InvalidRequest("cursor") for one not of this sort and order."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError("not an object")
    except (ValueError, TypeError) as err:
        raise InvalidRequest("cursor", "not a cursor this table made") from err
    if payload.get("s") != sort or payload.get("o") != order:
        raise InvalidRequest("cursor", "a cursor of another sort: start from the first page")
    if "off" in payload:
        if not isinstance(payload["off"], int) or payload["off"] < 0:
            raise InvalidRequest("cursor", "not a cursor this table made")
        return {"off": payload["off"]}
    values = payload.get("v")
    if not isinstance(values, list) or len(values) > 5 or payload.get("p", "v") not in "vn":
        raise InvalidRequest("cursor", "not a cursor this table made")
    return {"v": [_unjson(v) for v in values], "p": payload.get("p", "v")}


def _unjson(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("t"), str):
        try:
            return datetime.fromisoformat(value["t"])
        except ValueError as err:
            raise InvalidRequest("cursor", "not a cursor this table made") from err
    if isinstance(value, str) and search.unprintable(value) is not None:
        raise InvalidRequest("cursor", "not a cursor this table made")
    if value is None or isinstance(value, int | float | str) and not isinstance(value, bool):
        return value
    raise InvalidRequest("cursor", "not a cursor this table made")


# --- Param and metric values of a page's rows, and the column catalogue ---


def values_of(session: Session, run_ids: list[int], columns: Sequence[str]) -> dict[int, dict]:
    """{run_id: {column key: value}} of these runs' param./metric. columns (a flag as a
    bool, a number as a float, text as text; a column the run lacks is left out)."""
    out: dict[int, dict] = {run_id: {} for run_id in run_ids}
    params = [c[len(PARAM) :] for c in columns if c.startswith(PARAM)]
    metrics = [c[len(METRIC) :] for c in columns if c.startswith(METRIC)]
    if not run_ids:
        return out
    if params:
        kept = select(RunParam).where(RunParam.run_id.in_(run_ids), RunParam.key.in_(params))
        for p in session.scalars(kept):
            out[p.run_id][PARAM + p.key] = param_value(p.num_value, p.text_value)
    if metrics:
        query = select(MetricSummary.run_id, MetricSummary.key, kept_value_of(MetricSummary))
        query = query.where(MetricSummary.run_id.in_(run_ids), MetricSummary.key.in_(metrics))
        for run_id, key, value in session.execute(query):
            out[run_id][METRIC + key] = value
    return out


def param_value(num_value: float | None, text_value: str | None) -> Any:
    """A kept parameter as the table shows it."""
    kind = run_values.type_of(num_value, text_value)
    if kind == "bool":
        return bool(num_value)
    if kind == "number":
        return int(num_value) if num_value is not None and num_value.is_integer() else num_value
    return text_value


def catalogue(session: Session) -> dict:
    """Every column the table can show: the built-in ones, then each parameter and metric
    key the store holds (MAX_CATALOGUE of each), read by walking their indexes one
    distinct key at a time (never a scan of every run)."""
    builtin = [
        {"key": c["key"], "label": c["label"], "group": "builtin", "type": c["type"]}
        for c in COLUMNS
    ]
    params = [
        {
            "key": PARAM + key,
            "label": key,
            "group": "param",
            "type": _catalogue_type(num, text),
        }
        for key, num, text in session.execute(_PARAM_KEYS, {"cap": MAX_CATALOGUE})
    ]
    metrics = [
        {"key": METRIC + key, "label": key, "group": "metric", "type": "number"}
        for (key,) in session.execute(_METRIC_KEYS, {"cap": MAX_CATALOGUE})
    ]
    return {"columns": builtin + params + metrics, "max_per_group": MAX_CATALOGUE}


def _catalogue_type(num: float | None, text: str | None) -> str:
    if num is None:
        return "text"
    if text is None:
        return "number"
    return "bool" if text in ("true", "false") else "text"


# A loose index scan (one step per distinct key), on PostgreSQL and SQLite alike.
_DISTINCT = """
WITH RECURSIVE k(key) AS (
    SELECT min(key) FROM {table}
    UNION ALL
    SELECT (SELECT min(t.key) FROM {table} t WHERE t.key > k.key) FROM k WHERE k.key IS NOT NULL
)
"""
_PARAM_KEYS = text(
    _DISTINCT.format(table="run_params")
    + "SELECT k.key, (SELECT max(p.num_value) FROM run_params p WHERE p.key = k.key), "
    "(SELECT max(p.text_value) FROM run_params p WHERE p.key = k.key) "
    "FROM k WHERE k.key IS NOT NULL LIMIT :cap"
)
_METRIC_KEYS = text(
    _DISTINCT.format(table="metric_summaries")
    + "SELECT key FROM k WHERE key IS NOT NULL LIMIT :cap"
)


def _duration_expr(session: Session) -> ColumnElement[Any]:
    """Seconds from start to finish (or to now while running), in the database's dialect."""
    if session.get_bind().dialect.name == "sqlite":
        end = func.coalesce(func.julianday(Run.finished_at), func.julianday("now"))
        return (end - func.julianday(Run.started_at)) * 86400.0
    end = func.coalesce(Run.finished_at, func.now())
    return func.extract("epoch", end - Run.started_at)


def _rank_keys() -> list[kinds.RankKey]:
    """Every kind's ranking keys, in each kind's order of preference."""
    return [rank for name in kinds.names() for rank in kinds.get(name).ranking]


def _like(rank: kinds.RankKey) -> str:
    """A ranking key as a LIKE pattern ("trial-*/val_loss" -> "trial-%/val_loss")."""
    return rank.key.replace("%", r"\%").replace("_", r"\_").replace("*", "%")


def _byte_ordered(session: Session) -> bool:
    """Whether text compares byte by byte (SQLite's default; PostgreSQL's depends on the
    database's locale, where "-" and "." may not order as their bytes do)."""
    return session.get_bind().dialect.name == "sqlite"


def _prefix_range(rank: kinds.RankKey, byte_ordered: bool) -> list[ColumnElement[bool]]:
    """Bounds on the key from a pattern's literal start ("trial-" of "trial-*/val_loss"), so
    the database reads only those keys from the key index, not every summary (only where
    text orders by bytes)."""
    prefix = rank.key.split("*", 1)[0]
    if not prefix or not byte_ordered:
        return []
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return [MetricSummary.key >= prefix, MetricSummary.key < end]


def _by_best(query: Select[*Cols], descending: bool, byte_ordered: bool = False) -> Select[*Cols]:
    """Runs with a score first, grouped by what they are scored on: accuracy-like metrics
    before losses, then kind (the registry's order), then the kind's ranking metric (its
    order of preference); best first within a group (descending; ascending: worst first).
    A loss is never ranked against an accuracy, nor a pretrain that reached only ae01
    against ones scored on ae03."""
    ranks = [(name, rank) for name in kinds.names() for rank in kinds.get(name).ranking]
    ranks.sort(key=lambda pair: pair[1].metric.goal != "max")  # stable: keeps the rest
    groups: list[tuple[ColumnElement[bool], int]] = []
    scores: list[tuple[ColumnElement[bool], ColumnElement[float]]] = []
    for name, rank in ranks:
        query, value = _rank_value(query, rank, byte_ordered)
        hit = (Run.kind == name) & value.is_not(None)
        groups.append((hit, len(groups)))
        scores.append((hit, -value if rank.metric.goal == "max" else value))  # low: good
    if not groups:
        return query.order_by(Run.id.desc())
    group, score = case(*groups, else_=None), case(*scores, else_=None)
    return query.order_by(
        group.is_(None), group, score.asc() if descending else score.desc(), Run.id.desc()
    )


def _rank_value(
    query: Select[*Cols], rank: kinds.RankKey, byte_ordered: bool = False
) -> tuple[Select[*Cols], ColumnElement[float]]:
    """The query joined to the value a run is ranked by on `rank`, and that value."""
    if rank.pattern:  # a tune: its best trial
        pick = func.min if rank.metric.goal == "min" else func.max
        sub = (
            select(MetricSummary.run_id, pick(MetricSummary.best_value).label("v"))
            .where(
                *_prefix_range(rank, byte_ordered), MetricSummary.key.like(_like(rank), escape="\\")
            )
            .group_by(MetricSummary.run_id)
            .subquery()
        )
        return query.outerjoin(sub, sub.c.run_id == Run.id), sub.c.v
    alias = aliased(MetricSummary)
    query = query.outerjoin(alias, (alias.run_id == Run.id) & (alias.key == rank.key))
    # The value at the kept epoch (early stopping's restored one), as the row shows it.
    return query, func.coalesce(alias.kept_value, alias.last_value)


def _summaries(session: Session, run_ids: list[int]) -> dict[int, dict[str, MetricSummary]]:
    """The summaries the rows show, for all runs of the page in one query."""
    if not run_ids:
        return {}
    ranks = _rank_keys()
    exact = [rank.key for rank in ranks if not rank.pattern]
    patterns = [MetricSummary.key.like(_like(r), escape="\\") for r in ranks if r.pattern]
    out: dict[int, dict[str, MetricSummary]] = {}
    rows = session.scalars(
        select(MetricSummary).where(
            MetricSummary.run_id.in_(run_ids), or_(MetricSummary.key.in_(exact), *patterns)
        )
    )
    for summary in rows:
        out.setdefault(summary.run_id, {})[summary.key] = summary
    return out


def row_of(
    run: Run,
    dataset_name: str,
    summaries: dict,
    now: datetime,
    links: dict | None = None,
    eta: liveness.Eta | None = None,
) -> dict:
    """A run as one table row (JSON-able); `links` names its parent and group, `eta` is a
    running run's (backend/runs/liveness.py: the same figure as the queue panel's)."""
    links = links or {}
    progress = progress_of(run) if run.status == RunStatus.RUNNING else None
    if progress is not None:
        found = eta or liveness.Eta(None, None)
        progress.update(found.fields())
    evaluation = (run.result or {}).get("evaluation") or {}
    group = links.get("groups", {}).get(run.group_id)
    parent_name = links.get("runs", {}).get(run.parent_run_id)
    return {
        "id": run.id,
        "kind": run.kind,
        "name": run.name,
        "status": run.status,
        "archived": bool(run.archived),
        "tags": list(run.tags or []),
        "dataset": dataset_name,
        "group_id": run.group_id,
        "group": {"id": run.group_id, "name": group[0], "kind": group[1]} if group else None,
        "study_name": run.study_name,
        "parent_run_id": run.parent_run_id,
        "parent_name": parent_name,
        "launched_by": run.launched_by,
        "key_params": key_params(run.kind, run.params or {}, run.tags or []),
        "best": best_of(run, summaries),
        "test_accuracy": _number(evaluation.get("accuracy")),
        "balanced_accuracy": _number(evaluation.get("balanced_accuracy")),
        "progress": progress,
        "priority": run.priority,
        "set_aside_for": run.set_aside_for,
        "duration_seconds": liveness.duration(run, now, eta),  # a silent worker's: stops
        "created_at": aware(run.created_at).isoformat(),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "error": (run.error or "")[:200] or None,
    }


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _iso(moment: datetime | None) -> str | None:
    return aware(moment).isoformat() if moment else None


def key_params(kind: str, params: dict, tags: Sequence[str] = ()) -> list[list[str]]:
    """The few parameters that tell runs apart in a list, as [label, value] pairs; an
    ablation study's arm run shows the factor it varies and its arm first (its tags
    `factor:<name>` and `arm:<name>`, store/runs/ablations.py), e.g. ["Class weights", "on"]."""
    pairs = kinds.table_columns(kind, params)
    found = dict(tag.split(":", 1) for tag in tags if tag.startswith(("factor:", "arm:")))
    factor = ablations.FACTORS.get(found.get("factor", ""))
    if factor is not None and found.get("arm") in {arm.name for arm in factor.arms}:
        return [[factor.label, found["arm"]], *pairs]
    return pairs


def best_of(run: Run, summaries: dict[str, MetricSummary]) -> dict | None:
    """The score a run is judged by: {label, value, epoch, goal} or None yet. For a model
    that is kept (a finetune, a pretrain stage) it is the kept epoch's; for a tune, its
    best trial's."""
    if run.kind not in kinds.names():
        return None
    kind = kinds.get(run.kind)
    score = (run.result or {}).get(kind.result_score) if kind.result_score else None
    if score is not None and kind.ranking:  # the job's own verdict (a tune's best trial)
        rank = kind.ranking[0]
        return {"label": rank.label, "value": score, "epoch": None, "goal": rank.metric.goal}
    for rank in kind.ranking:
        if rank.pattern:
            found = [s for key, s in summaries.items() if fnmatchcase(key, rank.key)]
            if found:
                pick = min if rank.metric.goal == "min" else max
                s = pick(found, key=lambda s: s.best_value)
                return {**_score(rank, s), "trial": s.key.split("/")[0]}
        elif rank.key in summaries:
            return _score(rank, summaries[rank.key])
    return None


def _score(rank: kinds.RankKey, summary: MetricSummary) -> dict:
    """The value at the epoch whose model the run keeps (early stopping's restored epoch,
    else the last), not the best of any epoch."""
    kept = summary.kept_step is not None
    return {
        "label": rank.label,
        "value": summary.kept_value if kept else summary.last_value,
        "epoch": summary.kept_step if kept else summary.last_step,
        "goal": rank.metric.goal,
    }


def progress_of(run: Run) -> dict:
    """Live progress with the overall fraction done (0..1) across stages."""
    p = dict(run.progress or {})
    if not p:
        return {"fraction": 0.0}
    p["fraction"] = run_progress.fraction(p)
    return p
