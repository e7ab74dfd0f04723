"""A run's "best" as the runs table sorts by it, kept on the run (`runs.best_key`,
`runs.best_score`, migration 0016) so a page sorted by it walks an index instead of
ranking every run.

What a run is ranked on (its group): the first of its kind's ranking keys, accuracy-like
ones before losses (`groups()`: the table's order of groups), that has a value; the value
is the key's kept value (the kept epoch's, else the last), a tune's pattern key the best
of its trials. `best_score` is that value signed so that lower is better (an accuracy is
negated), so one order serves every group.

It is refreshed whenever a session writes a run's summaries: a flush (a new epoch, a
rebuild after a resume, a test factory's rows) or a DELETE statement (an attempt starting
over, a rebuild) notes the run, and the transaction's commit refreshes it, last (ORM
events on every session, so no writer has to remember, as the database bumps
runs_version). Rows written by Core statements on a bare connection (a bench's bulk
seed) are not seen: call `refresh`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from sqlalchemy import Delete, event, select, update
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from jobspec import kinds
from store.runs.models import MetricSummary, Run

Values = Mapping[str, tuple[float | None, float, float]]  # key: (kept, last, best value)


def groups() -> list[tuple[str, kinds.RankKey]]:
    """(kind, ranking key) in the table's order of groups: scored on an accuracy-like metric
    before a loss, then the registry's order of kinds, then each kind's preference."""
    ranks = [(name, rank) for name in kinds.names() for rank in kinds.get(name).ranking]
    ranks.sort(key=lambda pair: pair[1].metric.goal != "max")  # stable: keeps the rest
    seen: set[tuple[str, str]] = set()
    out = []
    for name, rank in ranks:
        if (name, rank.key) not in seen:
            seen.add((name, rank.key))
            out.append((name, rank))
    return out


def score_of(kind: str, values: Values) -> tuple[str | None, float | None]:
    """(the ranking key the run is scored on, its signed score: lower is better), or
    (None, None) for a run with no score yet (or of a kind no longer registered)."""
    for name, rank in groups():
        if name != kind:
            continue
        value = _value(rank, values)
        if value is not None:
            return rank.key, -value if rank.metric.goal == "max" else value
    return None, None


def _value(rank: kinds.RankKey, values: Values) -> float | None:
    if rank.pattern:  # a tune: its best trial's best value
        found = [best for key, (_, _, best) in values.items() if fnmatchcase(key, rank.key)]
        if not found:
            return None
        return min(found) if rank.metric.goal == "min" else max(found)
    if rank.key not in values:
        return None
    kept, last, _ = values[rank.key]
    return kept if kept is not None else last


def refresh(session: Session, run_ids: Iterable[int]) -> None:
    """Recompute the kept best of these runs from their summaries (written only where it
    changed)."""
    ids = sorted(set(run_ids))
    if not ids:
        return
    conn = session.connection()
    kind_of = dict(conn.execute(select(Run.id, Run.kind).where(Run.id.in_(ids))).all())
    values: dict[int, dict[str, tuple[float | None, float, float]]] = {i: {} for i in kind_of}
    query = select(
        MetricSummary.run_id,
        MetricSummary.key,
        MetricSummary.kept_value,
        MetricSummary.last_value,
        MetricSummary.best_value,
    ).where(MetricSummary.run_id.in_(list(kind_of)))
    for run_id, name, kept, last, best in conn.execute(query):
        values[run_id][name] = (kept, last, best)
    for run_id, kind in kind_of.items():
        key, score = score_of(kind, values[run_id])
        conn.execute(
            update(Run)
            .where(
                Run.id == run_id,
                Run.best_key.is_distinct_from(key) | Run.best_score.is_distinct_from(score),
            )
            .values(best_key=key, best_score=score)
        )
        loaded = session.identity_map.get(identity_key(Run, run_id))
        if loaded is not None:  # the session's copy says what the database now holds
            set_committed_value(loaded, "best_key", key)
            set_committed_value(loaded, "best_score", score)


PENDING = "stacklab.best_pending"  # session.info: runs whose summaries changed, not refreshed


def _touched(session: Session) -> set[int]:
    """Runs whose summaries this flush writes."""
    objects = (*session.new, *session.dirty, *session.deleted)
    return {obj.run_id for obj in objects if isinstance(obj, MetricSummary) and obj.run_id}


def _pending(session: Session) -> set[int]:
    found: set[int] = session.info.setdefault(PENDING, set())
    return found


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, flush_context: UOWTransaction) -> None:  # noqa: ARG001
    _pending(session).update(_touched(session))


@event.listens_for(Session, "do_orm_execute")
def _deleted(state: ORMExecuteState) -> None:
    """A DELETE of summaries by a statement (an attempt starting over, a rebuild): the runs
    it reaches are noted before it runs."""
    statement = state.statement
    if not (state.is_delete and isinstance(statement, Delete)):
        return
    if getattr(statement.table, "name", None) != MetricSummary.__tablename__:
        return
    reached = select(MetricSummary.run_id).distinct()
    if statement.whereclause is not None:
        reached = reached.where(statement.whereclause)
    _pending(state.session).update(state.session.connection().execute(reached).scalars())


@event.listens_for(Session, "before_commit")
def _committing(session: Session) -> None:
    """Refresh at commit, after everything else the transaction wrote: a worker's epoch
    fences its attempt last, so the run's row is locked only for its last moment."""
    if not session.info.get(PENDING):
        return
    session.flush()
    refresh(session, session.info.pop(PENDING, set()))  # (kept past a rollback: a recompute)
