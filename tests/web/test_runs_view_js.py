"""static/js/runs_view.js, the runs page's view, in Node (or headless Chromium without Node):
a clause the filter builder writes reads back, through the server's parser
(store/runs/search.py), as exactly the value typed; a view survives its URL (what a link, a
reload and a saved view carry); the columns a URL or a browser names are cleaned the same way
whatever they hold."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.runs import search
from tests.stack import REPO_ROOT, scaled

RUNS_VIEW = (REPO_ROOT / "static" / "js" / "runs_view.js").read_text(encoding="utf-8")
BUILTIN = [
    {"key": "kind", "label": "Kind", "default": True},
    {"key": "params", "label": "Key params", "default": True},
    {"key": "tags", "label": "Tags", "default": False},
]
EXAMPLES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _program(expression: str, argument: object) -> str:
    """A JS expression: runs_view.js loaded, then `expression` of `arg`, as JSON text."""
    return (
        f"(() => {{ {RUNS_VIEW}\n const arg = {json.dumps(argument)};"
        f" return JSON.stringify({expression}); }})()"
    )


@pytest.fixture(scope="module")
def js():
    """Evaluates an expression over runs_view.js (`runsView`, `arg`) and returns its value."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node:

        def run(expression: str, argument: object = None):
            script = f"console.log({_program(expression, argument)})"
            done = subprocess.run(
                [node, "-e", script], capture_output=True, text=True, timeout=scaled(60)
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        yield run
        return
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.browser.chromium import CHROMIUM

    if not shutil.which(CHROMIUM) and not __import__("os").path.exists(CHROMIUM):
        pytest.skip("neither node nor chromium is installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        yield lambda expression, argument=None: json.loads(
            page.evaluate(_program(expression, argument))
        )
        browser.close()


# Anything a person may type as a value: printable text (search.unprintable refuses the rest).
typed = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc", "Cf", "Co", "Cn"]),
    min_size=1,
    max_size=60,
)


@EXAMPLES
@given(values=st.lists(typed, min_size=1, max_size=20))
def test_a_builder_value_reads_back_through_the_servers_parser_as_typed(js, values):
    written = js("arg.map((v) => runsView.literal(v))", values)
    for value, text in zip(values, written, strict=True):
        (clause,) = search.parse(f"name = {text}")
        assert clause.values == (value,), text


def _bare_edges(value: str) -> bool:
    """No comma, and nothing at either end that Python's strip or JS's trim would take
    (they differ: U+0085 and U+001C-1F for Python, U+FEFF for JS)."""
    return (
        "," not in value
        and value == value.strip()
        and not value.startswith("\ufeff")
        and not value.endswith("\ufeff")
    )


@EXAMPLES
@given(items=st.lists(typed.filter(_bare_edges), min_size=1, max_size=8))
def test_an_any_of_clause_lists_each_value_as_typed_less_the_spaces_around_it(js, items):
    text = js('runsView.clause("tag", "in", arg.join(" , "))', items)
    (clause,) = search.parse(text)
    assert clause.op == search.Op.IN
    assert clause.values == tuple(items)


def test_numbers_dates_and_words_stay_bare_so_the_server_reads_them_as_such(js):
    written = js(
        "arg.map(([f, o, v]) => runsView.clause(f, o, v))",
        [
            ["param.learning_rate", "<", "1e-3"],
            ["created", ">=", "2026-12-01"],
            ["param.augment", "=", "true"],
            ["metric.finetune/val_accuracy", ">=", "0.6"],
            ["notes", "~", "two words"],
            ["name", "=", "and"],
        ],
    )
    assert written == [
        "param.learning_rate < 1e-3",
        "created >= 2026-12-01",
        "param.augment = true",
        "metric.finetune/val_accuracy >= 0.6",
        'notes ~ "two words"',
        'name = "and"',
    ]
    clauses = search.parse(" and ".join(written))
    assert [c.values[0] for c in clauses] == [
        0.001,
        date(2026, 12, 1),
        True,
        0.6,
        "two words",
        "and",
    ]


words = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=30)
views = st.fixed_dictionaries(
    {
        "filters": st.dictionaries(
            st.sampled_from(["filter", "kind", "status", "dataset", "tag", "q"]),
            words.map(str.strip).filter(bool),
            max_size=6,
        ),
        "sort": st.one_of(
            st.sampled_from(["created", "name", "best"]), words.map(lambda w: f"param.{w}")
        ),
        "order": st.sampled_from(["asc", "desc"]),
        "columns": st.lists(
            st.sampled_from(["kind", "params", "tags", "metric.a/b"]), min_size=1, unique=True
        ),
        "cursor": st.one_of(st.just(""), st.text("abcXYZ019-_", min_size=1, max_size=40)),
        "offset": st.just(0),
    }
)


@EXAMPLES
@given(view=views)
def test_a_view_survives_its_url(js, view):
    back = js("runsView.read(runsView.query(arg).toString())", view)
    assert back == view


def test_columns_keep_the_tables_order_once_each_and_drop_what_is_no_column(js):
    cleaned = js(
        "runsView.cleanColumns(arg, " + json.dumps(BUILTIN) + ")",
        ["metric.b", "tags", "nonsense", "kind", "param.a", "metric.b", "param. x", "", "kind"],
    )
    assert cleaned == ["kind", "tags", "metric.b", "param.a"]
    many = [f"param.p{i}" for i in range(100)]
    capped = js("runsView.cleanColumns(arg, [])", many)
    assert capped == many[: js("runsView.COLUMNS_MAX")]
