"""The text rules (jobspec/text.py) hold for every string, proven over all of Unicode:
lone surrogates, NUL and every other control, format and unassigned character included.

- `check` either returns text that breaks no rule and fits its cap, or raises TextError
  (a ValueError, whose message never repeats the refused character);
- `shown` never raises, always encodes to UTF-8 and leaves nothing `check` would refuse;
- the store's JSON decoder (store/text_column.py) gives back only showable strings.
"""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jobspec import text
from store.text_column import json_loads, sqlite_text

RULES = [
    text.RUN_NAME,
    text.TAG,
    text.NOTES,
    text.DATASET_NAME,
    text.CLASS_NAME,
    text.SOURCE,
    text.FILE_NAME,
    text.QUERY,
]
# Every code point, surrogates too (hypothesis leaves them out unless asked).
ANY_CHAR = st.characters(exclude_categories=())
NASTY = st.sampled_from(
    [
        "\udfff",
        "\ud800",
        "\x00",
        "\x1b",
        "\r",
        "\n",
        "\t",
        "\u202e",
        "\u200b",
        "\ue000",
        "\U000e0001",
        "\u0378",
        "e\u0301",
        "\ufb01",
        " ",
        "\u00a0",
        "\u200d",
    ]
)
ANY_TEXT = st.lists(st.one_of(ANY_CHAR, NASTY), max_size=300).map("".join)


def _encodes(value: str) -> bool:
    value.encode("utf-8")
    return True


@settings(max_examples=400, deadline=None)
@given(value=ANY_TEXT, rule=st.sampled_from(RULES))
@example(value="\udfff", rule=text.TAG)
@example(value="x" * 1001, rule=text.RUN_NAME)
@example(value="a\r\nb\tc", rule=text.NOTES)
def test_check_returns_valid_text_or_refuses(value, rule):
    try:
        checked = text.check(value, rule)
    except text.TextError as err:
        message = str(err)
        assert message.startswith(rule.what) and _encodes(message)
        assert all(ch.isprintable() for ch in message)  # never the refused character
        return
    assert text.problem(checked, multiline=rule.multiline) is None
    assert rule.min_chars <= len(checked) <= rule.max_chars
    assert checked == unicodedata.normalize("NFC", checked)
    assert text.check(checked, rule) == checked  # checked text passes again, unchanged
    assert _encodes(checked)


@settings(max_examples=400, deadline=None)
@given(value=ANY_TEXT, multiline=st.booleans())
def test_shown_always_encodes_and_leaves_nothing_refused(value, multiline):
    out = text.shown(value, multiline=multiline)
    assert _encodes(out)
    assert text.problem(out, multiline=multiline) is None
    assert len(out) == len(value)  # one U+FFFD per refused character: positions kept
    assert text.shown(out, multiline=multiline) == out
    if text.problem(value, multiline=multiline) is None:
        assert out == value


@settings(max_examples=200, deadline=None)
@given(value=ANY_TEXT)
def test_problem_agrees_with_the_character_rules(value):
    # the C-speed isprintable() shortcut says "fine" only where no character is refused
    slow = any(text._bad_character(ch, False) for ch in value if not ch.isprintable())
    assert (text.problem(value) is not None) == slow


@settings(max_examples=200, deadline=None)
@given(
    value=st.recursive(
        st.one_of(st.none(), st.integers(), ANY_TEXT),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_json_read_back_from_the_store_is_showable(value):
    raw = json.dumps(value)  # as SQLAlchemy writes JSON: surrogates escaped, not refused
    decoded = json_loads(raw)
    assert _encodes(json.dumps(decoded, ensure_ascii=False))
    assert json_loads(raw.encode()) == decoded  # psycopg hands bytes


def test_shown_takes_anything():
    assert text.shown(None) == ""
    assert text.shown(b"a\xffb") == "a\ufffdb"
    assert text.shown(12) == "12"
    assert text.shown("x" * 500, limit=10).startswith("x" * 10 + "\u2026")

    class Broken:
        def __str__(self):
            raise RuntimeError

    assert text.shown(Broken()) == "<Broken>"


def test_sqlite_text_replaces_bytes_that_are_not_utf8():
    assert sqlite_text(b"a\xed\xbf\xbfb\xff") == "a\ufffd\ufffd\ufffdb\ufffd"


@pytest.mark.parametrize("pair", [("\uff21bc", "abc"), ("\ufb01le", "FILE"), ("e\u0301", "\u00c9")])
def test_fold_makes_lookalikes_equal(pair):
    assert text.fold(pair[0]) == text.fold(pair[1])
