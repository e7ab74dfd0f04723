"""The runs table's filter language: clauses joined by `and`, parsed here and turned into
SQL over runs (store.runs.service.filtered).

    param.learning_rate < 0.01 and metric.finetune/val_accuracy >= 0.6
    and tag in (a, b) and tag all (x, y) and created >= 2026-12-01 and created < 2026-12-07
    and notes ~ "flip" and status = running and kind = finetune and name ~ ae01

A clause is `<field> <operator> <value>`; `in` and `all` take a list in parentheses.
Operators: = != < <= > >= ~ (contains, any case), in (any of), all (every one: tags).
Fields (FIELDS says which operators each takes):

- name, notes, launched_by: text; kind, dataset, status: a word (status one of RunStatus);
- tag: `tag = x` has x, `tag != x` lacks it, `tag in (...)` any of them, `tag all (...)`;
- created, started, finished: a date (2026-12-01, the whole UTC day) or an ISO time;
- id, priority, group: numbers;
- param.<name>: a job parameter (nested names with dots: param.augmentation.zoom_range),
  compared as a number (or true/false for a flag) or as text ("quoted" is always text);
- metric.<key>: a metric's kept value (the stored key: metric.finetune/val_accuracy).

What a clause reads: param./metric. clauses probe run_params and metric_summaries by
(run, key); on PostgreSQL `name ~`, `notes ~` and tag clauses read trigram indexes
(pg_trgm, migration 0014) over the very expressions written below (lower(name),
lower(notes), the tags' JSON text), so they cost the runs that match, not the store; on
SQLite (and a PostgreSQL without pg_trgm) they scan the runs, which at SQLite's sizes
(10k runs) stays within a page's budget.

A clause on a parameter or a metric matches only runs that have it (`!=` too). Words are
case-insensitive (`AND`, `In`); values are not, except under `~`. Text is bounded
(MAX_FILTER_CHARS, MAX_CLAUSES, MAX_LIST_ITEMS); anything else is a FilterError naming the
character where it went wrong and what was expected there.
"""

from __future__ import annotations

import json
import operator
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import String, and_, cast, exists, func, not_, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from jobspec.status import RunStatus
from store.datasets.models import DatasetRecord
from store.runs.models import MetricSummary, Run, RunParam, kept_value_of

MAX_FILTER_CHARS = 1000  # the filter's length (the `filter` query parameter's cap)
MAX_CLAUSES = 32
MAX_LIST_ITEMS = 100
MAX_KEY_CHARS = 200  # a param./metric. name (run_params.key, metric_summaries.key)


class Op(StrEnum):
    """A clause's operator."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    CONTAINS = "~"
    IN = "in"
    ALL = "all"


COMPARE = (Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE)
WORD_OPS = (Op.EQ, Op.NE, Op.IN)


class FieldType(StrEnum):
    """How a field's values are read and compared."""

    TEXT = "text"  # name, notes: = != ~
    WORD = "word"  # kind, dataset, status, launched_by
    TAG = "tag"
    TIME = "time"
    NUMBER = "number"
    PARAM = "param"
    METRIC = "metric"


@dataclass(frozen=True)
class FieldSpec:
    """A field of the language: what its values are and the operators it takes."""

    type: FieldType
    ops: tuple[Op, ...]


FIELDS: dict[str, FieldSpec] = {
    "name": FieldSpec(FieldType.TEXT, (Op.EQ, Op.NE, Op.CONTAINS)),
    "notes": FieldSpec(FieldType.TEXT, (Op.CONTAINS,)),
    "launched_by": FieldSpec(FieldType.WORD, (*WORD_OPS, Op.CONTAINS)),
    "kind": FieldSpec(FieldType.WORD, WORD_OPS),
    "dataset": FieldSpec(FieldType.WORD, WORD_OPS),
    "status": FieldSpec(FieldType.WORD, WORD_OPS),
    "tag": FieldSpec(FieldType.TAG, (Op.EQ, Op.NE, Op.IN, Op.ALL)),
    "created": FieldSpec(FieldType.TIME, COMPARE),
    "started": FieldSpec(FieldType.TIME, COMPARE),
    "finished": FieldSpec(FieldType.TIME, COMPARE),
    "id": FieldSpec(FieldType.NUMBER, (*COMPARE, Op.IN)),
    "priority": FieldSpec(FieldType.NUMBER, (*COMPARE, Op.IN)),
    "group": FieldSpec(FieldType.NUMBER, (Op.EQ, Op.NE, Op.IN)),
}
PARAM, METRIC = "param.", "metric."
PARAM_SPEC = FieldSpec(FieldType.PARAM, (*COMPARE, Op.CONTAINS, Op.IN))
METRIC_SPEC = FieldSpec(FieldType.METRIC, (*COMPARE, Op.IN))
FIELD_HELP = ", ".join(FIELDS) + ", param.<name>, metric.<key>"

Value = float | bool | str | datetime | date


@dataclass(frozen=True)
class Clause:
    """One `field op value(s)` clause; `key` is a param./metric. clause's name."""

    field: str
    op: Op
    values: tuple[Value, ...]
    key: str | None = None


class FilterError(ValueError):
    """A filter that does not parse: where (0-based `position`) and what was expected."""

    def __init__(self, position: int, expected: str, found: str) -> None:
        self.position, self.expected, self.found = position, expected, found
        super().__init__(f"at character {position + 1}: expected {expected}, found {found}")


# --- Tokens ---

_SPACE = re.compile(r"\s+")
_OPERATOR = re.compile(r"!=|<=|>=|=|<|>|~")
_WORD = re.compile(r"[^\s()\",=!<>~]+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Token:
    kind: str  # "op", "word", "text" (quoted), "(", ")", ",", "end"
    text: str
    position: int

    def shown(self) -> str:
        if self.kind == "end":
            return "the end of the filter"
        return json.dumps(self.text if len(self.text) <= 40 else self.text[:40] + "...")


def tokens(source: str) -> list[Token]:
    """The filter's tokens, ending with an "end" token; FilterError on an unclosed quote or
    a character that starts none."""
    out: list[Token] = []
    at = 0
    while True:
        space = _SPACE.match(source, at)
        if space:
            at = space.end()
        if at >= len(source):
            out.append(Token("end", "", at))
            return out
        ch = source[at]
        if ch in "(),":
            out.append(Token(ch, ch, at))
            at += 1
        elif ch == '"':
            text, at = _quoted(source, at)
            out.append(Token("text", text, at - len(text)))
        elif operator := _OPERATOR.match(source, at):
            out.append(Token("op", operator.group(), at))
            at = operator.end()
        elif word := _WORD.match(source, at):
            out.append(Token("word", word.group(), at))
            at = word.end()
        else:  # "!" alone
            raise FilterError(at, "a field, an operator or a value", json.dumps(ch))


def _quoted(source: str, start: int) -> tuple[str, int]:
    """The text of a "quoted" value (\\" and \\\\ escaped) and where it ends."""
    out, at = [], start + 1
    while at < len(source):
        ch = source[at]
        if ch == "\\" and at + 1 < len(source) and source[at + 1] in '"\\':
            out.append(source[at + 1])
            at += 2
        elif ch == '"':
            return "".join(out), at + 1
        else:
            out.append(ch)
            at += 1
    raise FilterError(start, 'a closing quote (")', "the end of the filter")


# --- Parsing ---


def parse(source: str | None) -> list[Clause]:
    """The clauses of a filter (none for an empty one), or FilterError."""
    if not source or not source.strip():
        return []
    if len(source) > MAX_FILTER_CHARS:
        raise FilterError(
            MAX_FILTER_CHARS, f"at most {MAX_FILTER_CHARS:,} characters", f"{len(source):,}"
        )
    at = unprintable(source)
    if at is not None:
        raise FilterError(at, "printable text", f"U+{ord(source[at]):04X}")
    return _Parser(tokens(source)).filter()


def unprintable(text: str) -> int | None:
    """Where `text` holds a character no filter, column key or value may (a control or
    format character, a lone surrogate, private use, unassigned): a database may refuse
    it (PostgreSQL: NUL) and no page can show it. Space, tab and newline are fine."""
    for at, ch in enumerate(text):
        if ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return at
    return None


class _Parser:
    def __init__(self, items: list[Token]) -> None:
        self.items, self.at = items, 0

    def peek(self) -> Token:
        return self.items[self.at]

    def take(self) -> Token:
        token = self.items[self.at]
        self.at = min(self.at + 1, len(self.items) - 1)
        return token

    def fail(self, expected: str, token: Token | None = None) -> FilterError:
        token = token or self.peek()
        return FilterError(token.position, expected, token.shown())

    def filter(self) -> list[Clause]:
        clauses = [self.clause()]
        while self.peek().kind != "end":
            token = self.take()
            if not (token.kind == "word" and token.text.lower() == "and"):
                raise self.fail('"and" or the end of the filter', token)
            if len(clauses) >= MAX_CLAUSES:
                raise self.fail(f"at most {MAX_CLAUSES} clauses", token)
            clauses.append(self.clause())
        return clauses

    def clause(self) -> Clause:
        token = self.take()
        name = token.text if token.kind == "word" else ""
        field, key, spec = _field(name)
        if spec is None:
            raise self.fail(f"a field ({FIELD_HELP})", token)
        op_token = self.take()
        op = _op(op_token)
        if op is None or op not in spec.ops:
            allowed = " ".join(spec.ops)
            raise self.fail(f"an operator for {field} ({allowed})", op_token)
        raw = self.items_list() if op in (Op.IN, Op.ALL) else [self.value()]
        values = tuple(_read(spec.type, field, token, self) for token in raw)
        return Clause(field, op, values, key)

    def value(self) -> Token:
        token = self.take()
        if token.kind not in ("word", "text"):
            raise self.fail("a value", token)
        return token

    def items_list(self) -> list[Token]:
        opening = self.take()
        if opening.kind != "(":
            raise self.fail('"(" and a list of values', opening)
        out = [self.value()]
        while (token := self.take()).kind == ",":
            if len(out) >= MAX_LIST_ITEMS:
                raise self.fail(f"at most {MAX_LIST_ITEMS} values in a list", token)
            out.append(self.value())
        if token.kind != ")":
            raise self.fail('"," or ")"', token)
        return out


def _field(name: str) -> tuple[str, str | None, FieldSpec | None]:
    """(field, param/metric key, spec) of a field's name; spec None: no such field."""
    lowered = name.lower()
    for prefix, spec in ((PARAM, PARAM_SPEC), (METRIC, METRIC_SPEC)):
        if lowered.startswith(prefix):
            key = name[len(prefix) :]
            ok = 0 < len(key) <= MAX_KEY_CHARS
            return prefix.rstrip("."), key, spec if ok else None
    if lowered == "tags":
        lowered = "tag"
    return lowered, None, FIELDS.get(lowered)


def _op(token: Token) -> Op | None:
    if token.kind == "op" or (token.kind == "word" and token.text.lower() in ("in", "all")):
        return Op(token.text.lower())
    return None


def _read(kind: FieldType, field: str, token: Token, parser: _Parser) -> Value:
    """A value token as the field reads it, or FilterError naming what it should be."""
    text, quoted = token.text, token.kind == "text"
    if kind == FieldType.NUMBER or kind == FieldType.METRIC:
        number = _number(text)
        if number is None:
            raise parser.fail(f"a number for {field}", token)
        return number
    if kind == FieldType.TIME:
        moment = _time(text)
        if moment is None:
            raise parser.fail(f"a date (2026-12-01) or time (2026-12-01T09:30) for {field}", token)
        return moment
    if field == "status":
        if text not in RunStatus.__members__.values():
            raise parser.fail(f"a status ({', '.join(RunStatus)})", token)
        return text
    if kind == FieldType.PARAM and not quoted:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        number = _number(text)
        if number is not None:
            return number
    return text


def _number(text: str) -> float | None:
    if not _NUMBER.fullmatch(text):
        return None
    number = float(text)
    return number if abs(number) < 1e300 else None


def _time(text: str) -> datetime | date | None:
    """A date (the whole UTC day) or an ISO time (UTC when it names no zone)."""
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if not _DATE.match(text):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check(source: str | None) -> str | None:
    """`source` when it parses (a pydantic validator: FilterError is a ValueError)."""
    parse(source)
    return source


# --- SQL ---


def where(clauses: list[Clause]) -> list[ColumnElement[bool]]:
    """The conditions over Run (and its data set) the clauses ask for."""
    return [_condition(clause) for clause in clauses]


def _condition(clause: Clause) -> ColumnElement[bool]:
    field, op, values = clause.field, clause.op, clause.values
    if field == "param":
        return _param(clause.key or "", op, values)
    if field == "metric":
        summary = aliased(MetricSummary)  # never the table a sort joined
        found = kept_value_of(summary)
        match = _any(op, values, lambda o, v: _compare(found, o, v))
        return exists(select(1).where(summary.run_id == Run.id, summary.key == clause.key, match))
    if field == "tag":
        has = [_has_tag(str(v)) for v in values]
        if op == Op.NE:
            return not_(has[0])
        return and_(*has) if op == Op.ALL else or_(*has)
    if field in ("created", "started", "finished"):
        column = {"created": Run.created_at, "started": Run.started_at}.get(field, Run.finished_at)
        return _time_condition(column, op, values[0])
    if field == "dataset":
        named = select(DatasetRecord.id).where(DatasetRecord.name.in_([str(v) for v in values]))
        return Run.dataset_id.not_in(named) if op == Op.NE else Run.dataset_id.in_(named)
    column = _columns()[field]
    if op == Op.CONTAINS:
        return func.lower(column).contains(str(values[0]).lower(), autoescape=True)
    return _any(op, values, lambda o, v: _compare(column, o, v))


def _columns() -> dict[str, Any]:
    return {
        "name": Run.name,
        "notes": Run.notes,
        "launched_by": Run.launched_by,
        "kind": Run.kind,
        "status": Run.status,
        "id": Run.id,
        "priority": Run.priority,
        "group": Run.group_id,
    }


def _any(
    op: Op, values: tuple[Value, ...], one: Callable[[Op, Value], ColumnElement[bool]]
) -> ColumnElement[bool]:
    """`in`: any of the values (compared with =); else the one value under `op`."""
    if op == Op.IN:
        return or_(*(one(Op.EQ, value) for value in values))
    return one(op, values[0])


_OPERATORS: dict[Op, Callable[[Any, Any], Any]] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
}


def _compare(column: Any, op: Op, value: Value) -> ColumnElement[bool]:
    if op == Op.CONTAINS:
        return func.lower(column).contains(str(value).lower(), autoescape=True)
    condition: ColumnElement[bool] = _OPERATORS[op](column, value)
    return condition


def _param(key: str, op: Op, values: tuple[Value, ...]) -> ColumnElement[bool]:
    """A run that has parameter `key` with a value matching."""

    param = aliased(RunParam)  # never the table a sort joined

    def one(o: Op, value: Value) -> ColumnElement[bool]:
        if o == Op.CONTAINS:
            return _compare(param.text_value, o, value)
        if isinstance(value, bool):
            return _compare(param.num_value, o, 1.0 if value else 0.0)
        if isinstance(value, float):
            return _compare(param.num_value, o, value)
        return and_(param.num_value.is_(None), _compare(param.text_value, o, value))

    match = _any(op, values, one)
    return exists(select(1).where(param.run_id == Run.id, param.key == key, match))


def _has_tag(tag: str) -> ColumnElement[bool]:
    # Tags are a JSON list; its text holds each tag JSON-quoted on every backend.
    return cast(Run.tags, String).contains(json.dumps(tag), autoescape=True)


def day_bounds(value: Value) -> tuple[datetime, datetime]:
    """[start, end) of a date's UTC day, or [t, t] of a time."""
    if isinstance(value, datetime):
        return value, value
    assert isinstance(value, date)
    start = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _time_condition(column: Any, op: Op, value: Value) -> ColumnElement[bool]:
    start, end = day_bounds(value)
    if start == end:  # a time: exactly
        return _compare(column, op, start)
    within = and_(column >= start, column < end)
    conditions: dict[Op, ColumnElement[bool]] = {
        Op.EQ: within,
        Op.NE: or_(column < start, column >= end),
        Op.LT: column < start,
        Op.LE: column < end,
        Op.GT: column >= end,
        Op.GE: column >= start,
    }
    return conditions[op]
