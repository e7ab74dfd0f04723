"""How many times the runs table has changed: one row the database keeps up to date, so
"did any run change?" is one lookup, not an aggregate over every run.

`runs_version.version` is bumped by the database itself (migration 0014), on every
INSERT, UPDATE and DELETE of `runs`, whoever writes it: a claim, a fenced beat or finish,
the upkeep's give-up, a cancel, a re-queue, a priority change, a rename, a note, a delete,
an archive. No code path has to remember to bump it, so a compare-and-set added later is
covered too (tests/store/test_runs_version.py changes a run every way there is).

- PostgreSQL: a deferred constraint trigger, bumping once per transaction at its commit
  (a transaction-local flag), so the version row is locked only while a transaction
  commits, after every other lock it takes: no writer waits on it mid-transaction and no
  deadlock goes through it; the bump commits with the change it counts, never before.
- SQLite: a trigger per statement kind, per row (SQLite has one writer at a time anyway).

A batch-mode rebuild of `runs` on SQLite drops its triggers (as 0007's and 0011's): a
migration that rebuilds it creates them again (`sqlite_triggers()`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Index,
    Integer,
    String,
    case,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from store.base import Base
from store.runs.models import Run

ROW_ID = 1  # the table's only row


class RunsVersion(Base):
    """The runs table's change counter (one row, id ROW_ID), bumped by triggers on runs."""

    __tablename__ = "runs_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


def version(session: Session) -> int | None:
    """The runs table's change counter now (one primary-key lookup); None where the row is
    missing (a database made by create_all, without the migrations' triggers): the caller
    must then look at the runs themselves."""
    found = session.scalar(select(RunsVersion.version).where(RunsVersion.id == ROW_ID))
    return None if found is None else int(found)


# The runs table's page indexes of migration 0014 (declared here, beside the counter that
# came with them, so the models and the migrations agree): a built-in sort that is never
# null walks (column, id), the run's id being every sort's last key; name sorts by
# lower(name) (backend/runs/views.py `_builtin`: the very expression).
Index("ix_runs_name_lower", func.lower(Run.name), Run.id)
Index("ix_runs_status_id", Run.status, Run.id)
Index("ix_runs_kind_id", Run.kind, Run.id)
Index("ix_runs_priority_id", Run.priority, Run.id)
# A column that may be null pages its runs with a value by (column, id), then those
# without one (`IS NULL`) by id, from the same index (views.PHASED).
Index("ix_runs_finished_id", Run.finished_at, Run.id)
Index("ix_runs_launched_by_id", Run.launched_by, Run.id)
Index("ix_runs_parent_run_id_id", Run.parent_run_id, Run.id)
Index("ix_runs_group_id_id", Run.group_id, Run.id)
# Tags and params sort by the first TEXT_SORT_CHARS characters of their JSON text (a list's
# or an object's text can be longer than a btree entry may be), ties by id; the lengths
# are literals, as in the indexes (migration 0017), so the planner matches them. A page
# sorted by data set walks (dataset_id, id) a data set at a time (backend/runs/dataset_sort.py).
TEXT_SORT_CHARS = 200


def text_sort_key(column: Any) -> ColumnElement[str]:
    """What the runs table sorts a JSON column (tags, params) by."""
    start: ColumnElement[int] = literal_column("1")
    length: ColumnElement[int] = literal_column(str(TEXT_SORT_CHARS))
    key: ColumnElement[str] = func.substr(cast(column, String), start, length)
    return key


Index("ix_runs_tags_sort", text_sort_key(Run.tags).label("tags_sort"), Run.id)
Index("ix_runs_params_sort", text_sort_key(Run.params).label("params_sort"), Run.id)
# PostgreSQL only: SQLite, with statistics gathered before it existed, took it for the join
# of every page to its data set and sorted every run (a page by created: 10 -> 40 ms at
# 10,000 runs); there the walk reads ix_runs_dataset_id.
Index("ix_runs_dataset_id_id", Run.dataset_id, Run.id).ddl_if(dialect="postgresql")
# PostgreSQL: trigram indexes (pg_trgm) for `name ~`, `notes ~` and tag clauses
# (store/runs/search.py writes these very expressions). SQLite scans for them.
for _name, _expression in (
    ("ix_runs_name_trgm", func.lower(Run.name)),
    ("ix_runs_notes_trgm", func.lower(Run.notes)),
    ("ix_runs_tags_trgm", cast(Run.tags, String)),
):
    Index(
        _name,
        _expression.label(f"{_name}_expr"),
        postgresql_using="gin",
        postgresql_ops={f"{_name}_expr": "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql")


# A number of the run's stored evaluation (result.evaluation.<name>: test accuracy,
# balanced accuracy) as the runs table sorts by it, with its key path written as a literal
# (a bound parameter would not match the index), and its index on PostgreSQL (migration
# 0016; SQLite's twin is the migration's alone, as its duration index).
# A stored result the database cannot parse (an older version's lone surrogate escape, bad
# bytes written by hand) reads as no number, never as an error: on PostgreSQL `->` parses
# the whole document and refuses such a row, so the number is read by a function that
# answers NULL instead (stacklab_evaluation_number, migration 0016), else one bad row would
# fail every page sorted by it, and every write of that row, index and all; on SQLite
# json_extract is asked only of valid JSON.
EVALUATION_SORTS = ("accuracy", "balanced_accuracy")
PG_EVALUATION_FUNCTION = "stacklab_evaluation_number"


def evaluation_number(name: str, dialect: str) -> ColumnElement[float]:
    """result.evaluation.<name> of a run, in `dialect`'s words (a name of EVALUATION_SORTS);
    NULL where the stored result cannot be parsed."""
    if name not in EVALUATION_SORTS:
        raise ValueError(name)
    if dialect == "sqlite":
        found = func.json_extract(Run.result, literal_column(f"'$.evaluation.{name}'"))
        return case((func.json_valid(Run.result), found))
    number: ColumnElement[float] = getattr(func, PG_EVALUATION_FUNCTION)(
        Run.result, literal_column(f"'{name}'"), type_=Float
    )
    return number


for _name in EVALUATION_SORTS:
    Index(
        f"ix_runs_eval_{_name}_pg",
        evaluation_number(_name, "postgresql").label(f"eval_{_name}"),
        Run.id,
    ).ddl_if(dialect="postgresql")
