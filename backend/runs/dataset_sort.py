"""The runs table sorted by data set, a page at a time.

The order: data sets by name, any case (lower(name)), then by id where two names differ
only in case, then the runs of each data set by id; all three descending, or all three
ascending. A page walks one data set at a time on the index (dataset_id, id) (migration
0017), so it costs one page whatever the store holds: the data sets are read first (a short
list, in order), then their runs until the page is full, each data set's walk one index
range. A data set with no matching run costs one probe of that index.

Every row ends with its keys k0 (lower name), k1 (data set id), k2 (run id): the cursor's,
the same keys the offset paging orders by (views `_keyed`), so the two orders agree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, func, literal, select, tuple_
from sqlalchemy.orm import Session

from store.datasets.models import DatasetRecord
from store.errors import InvalidRequest
from store.runs.models import Run


def order_keys() -> list[Any]:
    """The order's keys after the direction: lower(name), data set id, run id."""
    return [func.lower(DatasetRecord.name), Run.dataset_id, Run.id]


def page(
    session: Session,
    base: Select[*tuple[Any, ...]],
    descending: bool,
    limit: int,
    position: dict | None,
) -> list[Row[Any]]:
    """`limit` rows of `base` (joined to datasets) in data-set order, after `position` (a
    cursor's [lower name, data set id, run id]); each row ends with k0, k1, k2."""
    after = _position(position)
    name_key = func.lower(DatasetRecord.name)
    sets = select(DatasetRecord.id, name_key)
    if after is not None:  # the cursor's data set and those after it, by the database's order
        here, last = tuple_(name_key, DatasetRecord.id), tuple_(literal(after[0]), after[1])
        sets = sets.where(here <= last if descending else here >= last)
    by = [name_key, DatasetRecord.id]
    sets = sets.order_by(*(k.desc() if descending else k.asc() for k in by))
    rows: list[Row[Any]] = []
    for dataset_id, name in session.execute(sets):
        resume = after[2] if after is not None and (name, dataset_id) == after[:2] else None
        query = _walk(base, dataset_id, name, descending, resume)
        rows += session.execute(query.limit(limit - len(rows))).all()
        if len(rows) >= limit:
            break
    return rows


def _walk(
    base: Select[*tuple[Any, ...]], dataset_id: int, name: str, descending: bool, after: int | None
) -> Select[*tuple[Any, ...]]:
    """One data set's runs of `base` by id, after run `after` when given."""
    query = base.where(Run.dataset_id == dataset_id).add_columns(
        literal(name).label("k0"), literal(dataset_id).label("k1"), Run.id.label("k2")
    )
    if after is not None:
        query = query.where(Run.id < after if descending else Run.id > after)
    return query.order_by(Run.id.desc() if descending else Run.id.asc())


def _position(position: dict | None) -> tuple[str, int, int] | None:
    if position is None:
        return None
    last = position.get("v") or []
    if (
        len(last) != 3
        or not isinstance(last[0], str)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in last[1:])
    ):
        raise InvalidRequest("cursor", "not a cursor of this sort: start from the first page")
    return last[0], last[1], last[2]
