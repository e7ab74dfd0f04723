"""Columns of text a person or a file named, read back defensively.

Every such string is checked on the way in (jobspec.text); these column types make sure
that what comes *out* of the store is always showable too, whoever wrote it: a row of an
older version, SQL typed by hand, a JSON escape (`"\\udfff"`) that decodes into a lone
surrogate. A character the text rules refuse becomes U+FFFD when the row is read, so no
page, list or export can fail to encode it. The SQL types are unchanged (no migration):
`ShownString(200)` is a VARCHAR(200), `ShownList()` a JSON column.

Two engine-wide hooks (store/db.py) cover what a column type cannot see:
- `json_loads`, the engine's JSON decoder: every string in every JSON column (params,
  results, progress too) passes `shown` when its text holds an escape or a character that
  could decode into one the rules refuse (a fast check on the raw text first);
- `sqlite_text`, SQLite's text factory: TEXT holding bytes that are not UTF-8
  (`CAST(X'ff' AS TEXT)`) is decoded with U+FFFD instead of raising on read.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from jobspec.text import shown, shown_json

# A JSON escape that can decode into a character the text rules refuse: \uXXXX (Python
# writes every non-ASCII character as one) and the control shortcuts (newline and tab are
# fine: JSON strings may hold multi-line text).
ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|[rbf])")
# SQLite's text factory: bytes to str in C (no Python frame per value), bad bytes replaced.
sqlite_text = partial(str, encoding="utf-8", errors="replace")


@lru_cache(maxsize=4096)
def _fine_escape(hex_digits: str) -> bool:
    """A \\uXXXX escape that decodes into a printable character (a surrogate half is not:
    its pair is looked at as a whole by the walk)."""
    return chr(int(hex_digits, 16)).isprintable()


def _needs_walk(text: str) -> bool:
    """Could a string decoded from this JSON text hold a character the rules refuse?

    Only if the text holds a raw character that is not printable, or an escape of one: both
    found without decoding (isprintable in C; each escape's code point looked up once).
    """
    if not text.isprintable():
        return True
    if "\\" not in text:
        return False
    for match in ESCAPE.finditer(text):
        hex_digits = match.group(1)
        if hex_digits is None or not _fine_escape(hex_digits):
            return True
    return False


def json_loads(raw: str | bytes | bytearray | memoryview) -> Any:
    """json.loads whose strings (keys too) are safe to show (newline and tab kept)."""
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    value = json.loads(text)
    return shown_json(value) if _needs_walk(text) else value


class ShownString(TypeDecorator[str]):
    """A VARCHAR of single-line text (a name), read back through `shown`.

    Newline and tab, refused in names on the way in, are kept on the way out: they encode,
    pages show them as spaces and the CSV export quotes them (and defuses a leading tab).
    """

    impl = String
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else shown(value, multiline=True)


class ShownText(TypeDecorator[str]):
    """A TEXT of multi-line text (notes, messages), read back through `shown` (newline and
    tab kept)."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else shown(value, multiline=True)


class ShownList(TypeDecorator[list[str]]):
    """A JSON list of single-line strings (tags, class names), each read through `shown`
    (newline and tab kept, as in ShownString); a stored value that is not a list reads as
    an empty list."""

    impl = JSON
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            return []
        return [shown(item, multiline=True) for item in value]


class ShownCounts(TypeDecorator[dict[str, int]]):
    """A JSON object of counts keyed by class name, keys read through `shown`."""

    impl = JSON
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, int] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            return {}
        return {shown(key, multiline=True): count for key, count in value.items()}
