"""Data sets as the pages and the API show them: bounded per data set and in all, whatever
a row holds (one stored before class names were capped may hold 1,000 names of 60,000
characters: 180 MB of JSON).

A row's class names and counts are never read whole: only a prefix of each JSON column
(LIST_TEXT bytes for a list, ONE_TEXT for one data set) reaches the web, parsed whole when
it is all there and leniently (the complete items it holds) when it is not. On SQLite,
which runs inside the web, the prefix is read through SQLite's incremental BLOB I/O (a
`substr()` would load the whole value into the web's memory first); PostgreSQL cuts it
with `substr()` on the server. A list shows the first LIST_CLASSES class names of each
data set, one data set's page the names up to MAX_CLASS_SUMMARY_CHARS characters in all;
each name is cut to CLASS_NAME.max_chars; `n_classes` and `classes_left_out` say what was
left out.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from sqlalchemy import Text, case, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from backend.datasets.schemas import DatasetRead
from jobspec import ablations
from jobspec.text import CLASS_NAME, MAX_CLASS_SUMMARY_CHARS, shown
from store.datasets.models import DatasetRecord
from store.errors import NotFound
from store.text_column import json_loads

LIST_CLASSES = 20  # class names a list shows per data set
LIST_TEXT = 64 * 1024  # characters of each JSON column a list reads per data set
ONE_TEXT = 1024 * 1024  # ... one data set's page or endpoint reads
NAME_CHARS = CLASS_NAME.max_chars  # a class name longer than this is cut (with a marker)
LIST_PAGE = 200  # data sets a list answer holds at most (GET /api/datasets?limit= up to it)
JSON_COLUMNS = (DatasetRecord.class_names, DatasetRecord.train_counts, DatasetRecord.test_counts)
SCAN_BYTES = 1 << 16  # what counting a long row's class names reads at a time (SQLite)
BACKSLASH, QUOTE = b"\\", b'"'
_TOKEN = re.compile(rb'\\.|"', re.DOTALL)  # an escape (skipped whole) or a quote
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
_COUNT = re.compile(r"[ \t\n\r]*:[ \t\n\r]*(-?[0-9]+)")


def _query(session: Session, budget: int):
    """A data set's small columns, and (except on SQLite: _texts) a prefix and the length
    of each JSON column's text."""
    texts: list[ColumnElement[Any]] = []
    if not _sqlite(session):
        for column in JSON_COLUMNS:
            text = cast(column, Text)
            texts += [func.substr(text, 1, budget), func.length(text)]
    return select(
        DatasetRecord.id,
        DatasetRecord.name,
        DatasetRecord.source,
        DatasetRecord.fingerprint,
        DatasetRecord.n_train,
        DatasetRecord.n_test,
        DatasetRecord.image_shape,
        DatasetRecord.created_at,
        *texts,
    )


def count(session: Session) -> int:
    """How many data sets the store holds."""
    return int(session.scalar(select(func.count()).select_from(DatasetRecord)) or 0)


def page(session: Session, *, limit: int = LIST_PAGE, offset: int = 0) -> list[DatasetRead]:
    """Data sets by name, `limit` from `offset`, each with its first LIST_CLASSES classes."""
    query = _query(session, LIST_TEXT).order_by(DatasetRecord.name).limit(limit).offset(offset)
    return [
        _summary(session, row, LIST_TEXT, max_classes=LIST_CLASSES)
        for row in session.execute(query).all()
    ]


def names(session: Session) -> list[str]:
    """Every data set's name, by name (the runs page's filter)."""
    return list(session.scalars(select(DatasetRecord.name).order_by(DatasetRecord.name)))


def one(session: Session, name: str) -> DatasetRead:
    """One data set by name, or NotFound: its class names up to MAX_CLASS_SUMMARY_CHARS
    characters in all (every name of a data set imported under that cap)."""
    row = session.execute(_query(session, ONE_TEXT).where(DatasetRecord.name == name)).first()
    if row is None:
        raise NotFound("data set", name)
    return _summary(session, row, ONE_TEXT, max_classes=None)


def by_id(session: Session, dataset_id: int) -> DatasetRead:
    """one() of a data set by id (a run's), or NotFound."""
    query = _query(session, ONE_TEXT).where(DatasetRecord.id == dataset_id)
    row = session.execute(query).first()
    if row is None:
        raise NotFound("data set", dataset_id)
    return _summary(session, row, ONE_TEXT, max_classes=None)


def _summary(session: Session, row: Any, budget: int, *, max_classes: int | None) -> DatasetRead:
    """The row as the API shows it: the first class names (max_classes, and
    MAX_CLASS_SUMMARY_CHARS characters in all), each cut to NAME_CHARS, their counts."""
    if _sqlite(session):
        texts = _texts(session, row.id, budget)
    else:
        texts = [(row[i], row[i + 1] is None or row[i + 1] <= budget) for i in range(8, 14, 2)]
    (names_text, names_whole), (train_text, train_whole), (test_text, test_whole) = texts
    names, whole = _read(names_text, names_whole, _strings)
    if not isinstance(names, list):
        names, whole = [], True
    train, _ = _read(train_text, train_whole, _counts)
    test, _ = _read(test_text, test_whole, _counts)
    train = train if isinstance(train, dict) else {}
    test = test if isinstance(test, dict) else {}
    n_classes = len(names) if whole else _array_length(session, row.id)
    shown_names: list[str] = []
    train_shown: dict[str, int] = {}
    test_shown: dict[str, int] = {}
    used = 0
    for full in names:
        name = shown(full, limit=NAME_CHARS)
        if (max_classes is not None and len(shown_names) >= max_classes) or (
            used + len(name) > MAX_CLASS_SUMMARY_CHARS
        ):
            break
        used += len(name)
        shown_names.append(name)
        key = full if isinstance(full, str) else None
        train_shown.setdefault(name, _int(train.get(key, 0)))
        test_shown.setdefault(name, _int(test.get(key, 0)))
    return DatasetRead(
        id=row.id,
        name=row.name,
        source=row.source,
        fingerprint=row.fingerprint,
        n_train=row.n_train,
        n_test=row.n_test,
        image_shape=list(row.image_shape or []),
        class_names=shown_names,
        train_counts=train_shown,
        test_counts=test_shown,
        created_at=row.created_at,
        n_classes=n_classes,
        classes_left_out=max(0, n_classes - len(shown_names)),
        imbalanced=ablations.imbalanced({k: _int(v) for k, v in train.items()}),
        test_imbalanced=ablations.imbalanced({k: _int(v) for k, v in test.items()}),
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _read(text: str | None, whole: bool, lenient) -> tuple[Any, bool]:
    """A JSON column's value from the prefix read: (value, whether it is all of it)."""
    if text is None:
        return None, True
    if whole:
        try:
            return json_loads(text), True
        except ValueError:
            return None, True
    return lenient(text), False


def _skip(text: str, i: int) -> int:
    """The index of the first character from `i` that is not JSON white space."""
    found = _SPACE.match(text, i)
    return found.end() if found else i


def _strings(text: str) -> list[str]:
    """The complete strings at the start of a cut JSON array of strings."""
    out: list[str] = []
    i = _skip(text, 0)
    if text[i : i + 1] != "[":
        return out
    i = _skip(text, i + 1)
    while text[i : i + 1] == '"':
        try:
            value, i = _DECODER.raw_decode(text, i)
        except ValueError:  # cut inside this string
            break
        out.append(shown(value))
        i = _skip(text, i)
        if text[i : i + 1] != ",":
            break
        i = _skip(text, i + 1)
    return out


def _counts(text: str) -> dict[str, int]:
    """The complete "name": count pairs at the start of a cut JSON object."""
    out: dict[str, int] = {}
    i = _skip(text, 0)
    if text[i : i + 1] != "{":
        return out
    i = _skip(text, i + 1)
    while text[i : i + 1] == '"':
        try:
            key, i = _DECODER.raw_decode(text, i)
        except ValueError:
            break
        found = _COUNT.match(text, i)
        if found is None or found.end() >= len(text):  # the number may be cut short
            break
        out.setdefault(shown(key), int(found.group(1)))
        i = _skip(text, found.end())
        if text[i : i + 1] != ",":
            break
        i = _skip(text, i + 1)
    return out


def _sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _raw(session: Session) -> sqlite3.Connection:
    """The sqlite3 connection under the session's (its transaction, its snapshot)."""
    raw = session.connection().connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def _texts(session: Session, dataset_id: int, budget: int) -> list[tuple[str | None, bool]]:
    """SQLite: (the first `budget` bytes as text, whether that is all) of each JSON column
    of the row, read without loading the rest of the value."""
    raw = _raw(session)
    out: list[tuple[str | None, bool]] = []
    for column in JSON_COLUMNS:
        try:
            with raw.blobopen(DatasetRecord.__tablename__, column.key, dataset_id) as blob:
                size, data = len(blob), blob.read(budget)
        except sqlite3.OperationalError:  # NULL
            out.append((None, True))
            continue
        out.append((data.decode("utf-8", "replace"), size <= budget))
    return out


def _sqlite_array_length(session: Session, dataset_id: int) -> int:
    """SQLite: how many strings a JSON array of strings too long to read holds, counted a
    piece at a time (every quote not escaped opens or closes one)."""
    raw = _raw(session)
    quotes, carry = 0, b""
    with raw.blobopen(DatasetRecord.__tablename__, "class_names", dataset_id) as blob:
        while piece := blob.read(SCAN_BYTES):
            piece = carry + piece
            trailing = len(piece) - len(piece.rstrip(BACKSLASH))
            cut = len(piece) - trailing % 2  # a lone backslash escapes the next piece's first
            piece, carry = piece[:cut], piece[cut:]
            quotes += sum(1 for token in _TOKEN.findall(piece) if token == QUOTE)
    return quotes // 2


def _array_length(session: Session, dataset_id: int) -> int:
    """How many class names a row too long to read holds."""
    if _sqlite(session):
        return _sqlite_array_length(session, dataset_id)
    column = DatasetRecord.class_names
    length: ColumnElement[Any] = func.json_array_length(column)
    length = case((func.json_typeof(column) == "array", length), else_=0)  # PostgreSQL
    query = select(length).where(DatasetRecord.id == dataset_id)
    return int(session.scalar(query) or 0)
