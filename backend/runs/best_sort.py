"""The runs table sorted by best, a page at a time, from the best kept on each run
(`runs.best_key`, `runs.best_score`: store/runs/best.py).

The order (as views' `_by_best` computes it from the summaries): the runs with a score
by group (`best.groups()`: accuracy-like before losses, then kind, then the kind's ranking
key), best first within a group (descending; ascending: worst first), ties by id
descending; then the runs with no score by id descending. A page walks one group at a
time on its index (kind, key, score, id), then the unscored runs: a phase per group,
named in the cursor by its place in the order, so a page costs one page whatever the
store holds.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, and_, case, literal, not_, null, or_, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from store.errors import InvalidRequest
from store.runs import best
from store.runs.models import Run


def _groups() -> list[tuple[str, str]]:
    return [(name, rank.key) for name, rank in best.groups()]


def _unscored(groups: list[tuple[str, str]]) -> ColumnElement[bool]:
    """Runs in no group: no score yet, or scored on a key their kind no longer ranks by."""
    if not groups:
        return literal(True)
    return or_(Run.best_key.is_(None), not_(tuple_(Run.kind, Run.best_key).in_(groups)))


def page(
    session: Session,  # noqa: ARG001 (the signature of the table's other sorts)
    base: Select[*tuple[Any, ...]],
    descending: bool,
    limit: int,
    position: dict | None,
) -> list[Row[Any]]:
    """`limit` rows of `base` sorted by best, after `position` (a cursor's [group, score,
    id]); each row ends with its keys k0 (group), k1 (score), k2 (id)."""
    groups = _groups()
    start, score, run_id = _position(position, len(groups))
    rows: list[Row[Any]] = []
    for group in range(start, len(groups) + 1):
        after = (score, run_id) if group == start and position is not None else None
        query = _phase(base, groups, group, descending, after)
        rows += session.execute(query.limit(limit - len(rows))).all()
        if len(rows) >= limit:
            break
    return rows


def _position(position: dict | None, count: int) -> tuple[int, Any, Any]:
    if position is None:
        return 0, None, None
    last = position.get("v") or []
    if len(last) != 3 or not isinstance(last[0], int) or not 0 <= last[0] <= count:
        raise InvalidRequest("cursor", "not a cursor of this sort: start from the first page")
    if not isinstance(last[2], int) or (last[0] < count and last[1] is None):
        raise InvalidRequest("cursor", "not a cursor this table made")
    return last[0], last[1], last[2]


def _phase(
    base: Select[*tuple[Any, ...]],
    groups: list[tuple[str, str]],
    group: int,
    descending: bool,
    after: tuple[Any, int] | None,
) -> Select[*tuple[Any, ...]]:
    """The runs of one group in order (its index walk), or the unscored runs by id."""
    if group == len(groups):
        query = base.where(_unscored(groups)).add_columns(
            literal(group).label("k0"), null().label("k1"), Run.id.label("k2")
        )
        if after is not None:
            query = query.where(Run.id < after[1])
        return query.order_by(Run.id.desc())
    kind, key = groups[group]
    query = base.where(Run.kind == kind, Run.best_key == key).add_columns(
        literal(group).label("k0"), Run.best_score.label("k1"), Run.id.label("k2")
    )
    if after is not None:
        score, run_id = after
        past = Run.best_score > score if descending else Run.best_score < score
        start = Run.best_score >= score if descending else Run.best_score <= score
        query = query.where(start, or_(past, and_(Run.best_score == score, Run.id < run_id)))
    by_score = Run.best_score.asc() if descending else Run.best_score.desc()
    return query.order_by(by_score, Run.id.desc())


def ordered(query: Select[*tuple[Any, ...]], descending: bool) -> Select[*tuple[Any, ...]]:
    """`query` (over Run) in the same order, every row (offset paging: older callers)."""
    groups = _groups()
    group: ColumnElement[int] = literal(0)
    if groups:
        group = case(
            *(
                (and_(Run.kind == kind, Run.best_key == key), i)
                for i, (kind, key) in enumerate(groups)
            ),
            else_=len(groups),
        )
    score = case((group < len(groups), Run.best_score), else_=None)
    by_score = score.asc() if descending else score.desc()
    query = query.add_columns(group.label("k0"), score.label("k1"), Run.id.label("k2"))
    return query.order_by(group, by_score, Run.id.desc())
