"""One text type for everything a person or a file can name.

Run names, tags, notes, data set names and sources, class names read from archives, study
names, token names: every such string passes `check` (or one of the pydantic types built on
it) before it is stored, and every string read back from the store passes `shown` before a
page or an answer uses it. The rules, defined once:

- valid Unicode: no lone surrogates (a JSON `"\\udfff"` escape, or a tar member name that
  was not UTF-8), which no UTF-8 encoder accepts;
- no control characters: NUL and the rest of Unicode's Cc category, the invisible format
  characters that reorder or hide text (bidi overrides, zero-width spaces), private-use and
  unassigned code points; newline and tab are allowed only in multi-line text (notes), and
  `\\r\\n` becomes `\\n` there;
- NFC normalised (a precomposed "é" and "e" + combining accent are one name), and for
  identifiers (`Rule.fold`) compared case-insensitively after NFKC, so lookalikes such as
  fullwidth letters or ligatures name the same thing;
- a length cap per field, counted in characters after normalisation.

A refusal is a `TextError` (a ValueError, so pydantic turns it into a 422) whose message
names the field and the rule, and never repeats the offending character itself.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, JsonValue

REPLACEMENT = "\ufffd"
# Format characters (Cf) that are harmless in names: the joiners that some scripts need.
ALLOWED_FORMAT = frozenset("\u200c\u200d")
MULTILINE_CONTROLS = frozenset("\n\t")


class TextError(ValueError):
    """A string a person or a file named breaks a text rule (the message says which)."""


@dataclass(frozen=True)
class Rule:
    """What one kind of text may hold."""

    what: str  # how a message names it: "run name", "tag", "class name"
    max_chars: int
    min_chars: int = 0
    multiline: bool = False  # newline and tab allowed (notes)
    strip: bool = True  # surrounding whitespace dropped (never for multi-line text)

    def check(self, value: str) -> str:
        return check(value, self)


def _bad_character(ch: str, multiline: bool) -> str | None:
    """Why `ch` cannot appear in text, or None when it can."""
    if multiline and ch in MULTILINE_CONTROLS:
        return None
    category = unicodedata.category(ch)
    if category == "Cs":
        return "a lone surrogate (not valid Unicode)"
    if category == "Cc":
        return "NUL" if ch == "\x00" else f"a control character (U+{ord(ch):04X})"
    if category == "Cf" and ch not in ALLOWED_FORMAT:
        return f"an invisible formatting character (U+{ord(ch):04X})"
    if category == "Co":
        return f"a private-use character (U+{ord(ch):04X})"
    if category == "Cn":
        return f"an unassigned code point (U+{ord(ch):04X})"
    return None


def _printable(value: str, multiline: bool) -> bool:
    """True when every character is printable (a C-speed check, no per-character Python)."""
    if multiline and ("\n" in value or "\t" in value):
        value = value.replace("\n", " ").replace("\t", " ")
    return value.isprintable()


def problem(value: str, *, multiline: bool = False) -> str | None:
    """The first rule `value` breaks (characters only, not length), or None."""
    if _printable(value, multiline):
        return None
    for index, ch in enumerate(value):
        if ch.isprintable() or ch == " ":
            continue
        why = _bad_character(ch, multiline)
        if why is not None:
            return f"holds {why} at character {index + 1}"
    return None


def check(value: str, rule: Rule) -> str:
    """`value` normalised, or TextError naming `rule.what` and what is wrong."""
    if not isinstance(value, str):
        raise TextError(f"{rule.what}: expected text")
    if len(value) > 4 * rule.max_chars + 64:  # before any work proportional to its size
        raise TextError(
            f"{rule.what}: {len(value):,} characters, more than the limit of {rule.max_chars:,}"
        )
    if rule.multiline:
        value = value.replace("\r\n", "\n")
    why = problem(value, multiline=rule.multiline)
    if why is not None:
        raise TextError(f"{rule.what} {why}")
    value = unicodedata.normalize("NFC", value)
    if rule.strip and not rule.multiline:
        value = value.strip()
    if len(value) > rule.max_chars:
        raise TextError(
            f"{rule.what}: {len(value):,} characters, more than the limit of {rule.max_chars:,}"
        )
    if len(value) < rule.min_chars:
        short = "is empty" if rule.min_chars == 1 else f"is shorter than {rule.min_chars}"
        raise TextError(f"{rule.what} {short}")
    return value


def fold(value: str) -> str:
    """The form two identifiers are compared in: NFKC, case-folded (lookalikes match)."""
    return unicodedata.normalize("NFKC", value).casefold()


def shown(value: object, *, multiline: bool = False, limit: int | None = None) -> str:
    """Stored text made safe to show and encode, whatever wrote it (an older version, SQL by
    hand): every character `check` would refuse becomes U+FFFD; bytes are decoded as UTF-8
    (bad bytes replaced); with `limit`, cut to that many characters (a marker says so).
    Never raises."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except Exception:  # an object whose __str__ fails is still shown as something
            text = f"<{type(value).__name__}>"
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"\u2026 ({len(text):,} characters)"
    if _printable(text, multiline):
        return text
    return "".join(
        REPLACEMENT
        if not (ch.isprintable() or ch == " ") and _bad_character(ch, multiline) is not None
        else ch
        for ch in text
    )


def shown_json(value: object, *, multiline: bool = True) -> object:
    """A decoded JSON value with every string in it (keys too) passed through `shown`."""
    if isinstance(value, str):
        return shown(value, multiline=multiline)
    if isinstance(value, list):
        return [shown_json(item, multiline=multiline) for item in value]
    if isinstance(value, dict):
        return {
            shown(key, multiline=multiline) if isinstance(key, str) else key: shown_json(
                item, multiline=multiline
            )
            for key, item in value.items()
        }
    return value


def _checked(rule: Rule) -> AfterValidator:
    return AfterValidator(rule.check)


def _schema(rule: Rule) -> Any:
    """The cap in the OpenAPI schema (checked by `rule`, after normalisation)."""
    bounds: dict[str, JsonValue] = {"maxLength": rule.max_chars}
    if rule.min_chars:
        bounds["minLength"] = rule.min_chars
    return Field(json_schema_extra=bounds)


# Hard caps: the largest any deployment may allow (settings may set smaller ones).
RUN_NAME = Rule("name", max_chars=1000)
TAG = Rule("tag", max_chars=1000, min_chars=1)
NOTES = Rule("notes", max_chars=1_000_000, multiline=True, strip=False)
DATASET_NAME = Rule("data set name", max_chars=100, min_chars=1)
CLASS_NAME = Rule("class name", max_chars=100, min_chars=1)
SOURCE = Rule("source", max_chars=1000)
FILE_NAME = Rule("file name", max_chars=255, min_chars=1)
QUERY = Rule("search text", max_chars=200)
# The whole list of a data set's class names, joined: bounds what every page listing data
# sets carries (1,000 classes of 100 characters would be 100,000).
MAX_CLASS_SUMMARY_CHARS = 20_000


RunName = Annotated[str, _checked(RUN_NAME), _schema(RUN_NAME)]
Tag = Annotated[str, _checked(TAG), _schema(TAG)]
Notes = Annotated[str, _checked(NOTES), _schema(NOTES)]
DatasetName = Annotated[str, _checked(DATASET_NAME), _schema(DATASET_NAME)]
SearchText = Annotated[str, _checked(QUERY), _schema(QUERY)]
SourceText = Annotated[str, _checked(SOURCE), _schema(SOURCE)]
FileName = Annotated[str, _checked(FILE_NAME), _schema(FILE_NAME)]
ClassName = Annotated[str, _checked(CLASS_NAME), _schema(CLASS_NAME)]

__all__ = [
    "CLASS_NAME",
    "ClassName",
    "DATASET_NAME",
    "FILE_NAME",
    "FileName",
    "MAX_CLASS_SUMMARY_CHARS",
    "NOTES",
    "QUERY",
    "RUN_NAME",
    "SOURCE",
    "SourceText",
    "TAG",
    "DatasetName",
    "Notes",
    "Rule",
    "RunName",
    "SearchText",
    "Tag",
    "TextError",
    "check",
    "fold",
    "problem",
    "shown",
    "shown_json",
]
