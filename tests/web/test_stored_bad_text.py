"""Stored content can never take a page down; a refusal never echoes a byte it cannot encode.

Every bad string the text rules refuse (jobspec.text) is written straight into the tables
with SQL, as an older version or a hand-made UPDATE could have left it: lone surrogates
(JSON escapes, and on SQLite TEXT holding the bytes of one), NUL, invalid UTF-8, 60,000
characters, terminal control sequences, a bidi override. Runs of every kind and status, a
data set, an import and a group hold them; then every GET page and JSON route of the app
that takes no parameter, a run id, a data set name, an import id or a group id (read from
the app itself, so a route added later is covered) answers without a 5xx, in valid UTF-8.

On SQLite and on PostgreSQL (which refuses NUL and bad UTF-8 in TEXT itself: only what it
can hold is written there).
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text

from jobspec import kinds
from jobspec.status import ImportState, RunStatus
from store.datasets.models import DatasetImport
from store.db import get_engine, session_scope
from tests.test_kind_contract import get_routes
from tests.web.factories import finetune_result, make_group, make_run

LONG = "x" * 60_000
# (SQL expression, dialects that can hold it) for the name/notes/error text columns.
SQLITE_ONLY = ("sqlite",)
BOTH = ("sqlite", "postgresql")
TEXT_VALUES: list[tuple[str, dict, tuple[str, ...]]] = [
    ("CAST(X'EDBFBF' AS TEXT)", {}, SQLITE_ONLY),  # a lone surrogate's bytes (not UTF-8)
    ("CAST(X'61FF62FE' AS TEXT)", {}, SQLITE_ONLY),  # invalid UTF-8
    ("'a' || char(0) || 'b'", {}, SQLITE_ONLY),  # NUL
    (":value", {"value": "\x1b[31mred\x07\x08\x7f\x85"}, BOTH),  # control characters
    (":value", {"value": "\u202egnp.exe\u200b\ue000\U000e0001"}, BOTH),  # bidi, invisible
    (":value", {"value": "<script>alert(1)</script>\r\n"}, BOTH),
]
LONG_VALUE = (":value", {"value": LONG}, BOTH)  # TEXT columns only on PostgreSQL
# JSON text as a hand-written row or an older version's json.dumps may have left it.
BAD_JSON_STRINGS = ["\\udfff", "\\ud800x", "a\\u0000b", "\\u001b[2J", "\\u202e", LONG]
BAD_TAGS = json.dumps(["ok"]).replace('"ok"', ", ".join(f'"{s}"' for s in BAD_JSON_STRINGS))

ANY_PARAM = re.compile(r"\{[^}]+\}")
BINARY = ("image/", "application/octet-stream", "application/zip")


def _sql(conn, statement: str, **params) -> None:
    conn.execute(text(statement), params)


@pytest.fixture(scope="module")
def bad_store(client):
    """Runs of every kind and status, a data set, an import and a group, all holding bad
    text written by SQL; returns the ids and names the routes take."""
    dialect = get_engine().dialect.name
    usable = [v for v in TEXT_VALUES if dialect in v[2]]
    text_values = [*usable, LONG_VALUE] if dialect == "sqlite" else usable
    bad_names = ["\udfff-class", "a\x00b", "\u202eevil", "x" * 300, "ok"]
    runs = []
    for kind in kinds.names():
        for status in RunStatus:
            result = finetune_result(bad_names) if kind == "finetune" else None
            runs.append(make_run(kind, status.value, result=result, error="boom"))
    group_id = make_group(name="study")
    with session_scope() as session:
        row = DatasetImport(
            name="bad-import", file_name="x.npz", upload_artifact_id=None, state=ImportState.FAILED
        )
        session.add(row)
        session.flush()
        import_id = row.id
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    register(make_demo(seed=1, n_train=20, n_test=10), name="bad-classes")
    with get_engine().begin() as conn:
        for index, run_id in enumerate(runs):
            name_sql, name_params, _ = text_values[index % len(text_values)]
            notes_sql, notes_params, _ = text_values[(index + 1) % len(text_values)]
            if dialect == "postgresql" and index % 3 == 0:  # TEXT: long notes fit
                notes_sql, notes_params = LONG_VALUE[:2]
            _sql(conn, f"UPDATE runs SET name = {name_sql} WHERE id = {run_id}", **name_params)
            _sql(conn, f"UPDATE runs SET notes = {notes_sql} WHERE id = {run_id}", **notes_params)
            _sql(conn, f"UPDATE runs SET error = {notes_sql} WHERE id = {run_id}", **notes_params)
            _sql(
                conn, f"UPDATE runs SET study_name = {name_sql} WHERE id = {run_id}", **name_params
            )
            _sql(
                conn, f"UPDATE runs SET launched_by = {name_sql} WHERE id = {run_id}", **name_params
            )
            _sql(
                conn,
                f"UPDATE runs SET tags = :tags, group_id = {group_id} WHERE id = {run_id}",
                tags=BAD_TAGS,
            )
        worst_sql, worst_params, _ = text_values[0]
        _sql(
            conn, f"UPDATE run_groups SET name = {worst_sql} WHERE id = {group_id}", **worst_params
        )
        for column in ("name", "message"):
            _sql(
                conn,
                f"UPDATE dataset_imports SET {column} = {worst_sql} WHERE id = {import_id}",
                **worst_params,
            )
        classes = json.dumps(["a", "b"]).replace(
            '"a", "b"', ", ".join(f'"{s}"' for s in BAD_JSON_STRINGS[:5])
        )
        counts = "{" + ", ".join(f'"{s}": 2' for s in BAD_JSON_STRINGS[:5]) + "}"
        _sql(
            conn,
            "UPDATE datasets SET class_names = :classes, train_counts = :counts, "
            f"test_counts = :counts, source = {worst_sql} WHERE name = 'bad-classes'",
            classes=classes,
            counts=counts,
            **worst_params,
        )
    return {"runs": runs, "group_id": group_id, "import_id": import_id, "dialect": dialect}


def _urls(paths: list[str], store: dict) -> list[str]:
    ids = ",".join(str(i) for i in store["runs"])
    values = {
        "run_id": store["runs"],
        "group_id": [store["group_id"]],
        "import_id": [store["import_id"]],
        "name": ["bad-classes"],
    }
    out = []
    for path in paths:
        params = ANY_PARAM.findall(path)
        if not params:
            out += [path, f"{path}?ids={ids}", f"{path}?archived=include&limit=500"]
        elif len(params) == 1:
            key = params[0].strip("{}").split(":")[0]
            out += [ANY_PARAM.sub(str(value), path) for value in values.get(key, [])]
    out += [f"/api/runs/{run_id}/errors?true=0&pred=1" for run_id in store["runs"]]
    return out


def _check_body(url: str, response) -> str | None:
    """Why the answer is wrong, or None: a 5xx, bytes that are not UTF-8, a NUL, an escaped
    lone surrogate."""
    if response.status_code >= 500:
        return f"{response.status_code}"
    ctype = response.headers.get("content-type", "")
    if ctype.startswith(BINARY):
        return None
    try:
        body = response.content.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"not UTF-8: {err}"
    if "\x00" in body:
        return "a raw NUL"
    if re.search(r"\\u[dD][89abAB]", body) and "json" in ctype:
        return "an escaped surrogate"
    if "json" in ctype:
        json.loads(body)
    return None


def test_every_page_renders_stored_bad_text(client, bad_store):
    paths = get_routes(client.app)
    checked = _urls(paths, bad_store)
    assert len(checked) > 20 * len(bad_store["runs"])
    problems = {}
    for url in checked:
        why = _check_body(url, client.get(url))
        if why:
            problems[url] = why
    assert not problems, problems


def test_lists_show_the_bad_text_replaced(client, bad_store):
    page = client.get("/api/runs", params={"limit": 500}).json()
    tags = next(item["tags"] for item in page["items"] if item["id"] == bad_store["runs"][0])
    assert tags[:4] == ["\ufffd", "\ufffdx", "a\ufffdb", "\ufffd[2J"]
    assert len(tags[-1]) == len(LONG)
    datasets = {d["name"]: d for d in client.get("/api/datasets").json()}
    assert datasets["bad-classes"]["class_names"][:3] == ["\ufffd", "\ufffdx", "a\ufffdb"]
    assert "\ufffd" in next(iter(datasets["bad-classes"]["train_counts"]))
    csv = client.get("/api/runs/table.csv").content
    assert b"\x00" not in csv and b"\x1b" not in csv
    csv.decode("utf-8")


# --- refusals: 422 naming the field, never echoing what cannot be encoded ---------------

BAD_INPUTS = {
    "lone surrogate": '"\\udfff"',
    "high surrogate": '"a\\ud800"',
    "NUL": '"a\\u0000b"',
    "escape sequence": '"\\u001b[2J"',
    "bidi override": '"\\u202eexe.txt"',
}


def _assert_refused(response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.content.decode("utf-8")  # strict: valid UTF-8
    assert "\\ud" not in body.lower() and "\\u0000" not in body
    errors = json.loads(body)["detail"]
    assert any(field in [str(part) for part in error["loc"]] for error in errors), errors


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
@pytest.mark.parametrize("field", ["name", "tags"])
def test_a_launch_with_bad_text_is_refused_naming_the_field(client, field, bad):
    value = BAD_INPUTS[bad] if field == "name" else f"[{BAD_INPUTS[bad]}]"
    body = f'{{"kind": "finetune", "dataset": "demo-tiny", "{field}": {value}}}'
    response = client.post("/api/runs", content=body, headers={"content-type": "application/json"})
    _assert_refused(response, field)


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
@pytest.mark.parametrize("field", ["name", "tags", "notes"])
def test_an_edit_with_bad_text_is_refused_naming_the_field(client, field, bad):
    run_id = make_run("finetune", "succeeded", name="fine")
    value = f"[{BAD_INPUTS[bad]}]" if field == "tags" else BAD_INPUTS[bad]
    if field == "notes" and bad == "NUL":
        value = '"line\\u0000"'
    response = client.patch(
        f"/api/runs/{run_id}",
        content=f'{{"{field}": {value}}}',
        headers={"content-type": "application/json"},
    )
    _assert_refused(response, field)
    assert client.get(f"/api/runs/{run_id}").json()["name"] == "fine"


def test_text_that_is_fine_is_kept_normalised(client):
    run_id = make_run("finetune", "succeeded", name="fine")
    edit = {
        "name": "  Cafe\u0301 \u0645\u0631\u062d\u0628\u0627  ",
        "tags": ["\u00e9t\u00e9"],
        "notes": "# Notes\r\n\tindented\n",
    }
    response = client.patch(f"/api/runs/{run_id}", json=edit)
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["name"] == "Caf\u00e9 \u0645\u0631\u062d\u0628\u0627"  # NFC, stripped
    assert run["notes"] == "# Notes\n\tindented\n"  # CRLF -> LF, tab kept


def test_a_huge_invalid_input_is_not_echoed_whole(client):
    body = json.dumps({"kind": "finetune", "dataset": "demo-tiny", "name": "\x01" * 100_000})
    response = client.post("/api/runs", content=body, headers={"content-type": "application/json"})
    _assert_refused(response, "name")
    assert len(response.content) < 5_000


def test_a_filter_with_bad_text_is_refused(client):
    for params in ({"q": "a\x00"}, {"tag": "\x1b"}, {"q": "x" * 5000}):
        response = client.get("/api/runs", params=params)
        _assert_refused(response, next(iter(params)))


def test_a_data_set_name_differing_only_in_case_is_taken(client):
    response = client.post(
        "/api/datasets/upload",
        params={"name": "DEMO-Tiny"},
        files={"file": ("d.npz", b"not read", "application/octet-stream")},
    )
    assert response.status_code == 422, response.text
    assert "'demo-tiny' exists already" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        (
            "/api/ablations",
            '{"dataset": "demo-tiny", "factor": "augmentation", "name": %s}',
            "name",
        ),
        ("/api/augmentation-studies", '{"dataset": "demo-tiny", "name": %s}', "name"),
        ("/api/runs/bulk", '{"action": "tag", "ids": [1], "tag": %s}', "tag"),
        ("/api/demo", '{"dataset": %s}', "dataset"),
        ("/api/datasets/cifar10", '{"name": %s}', "name"),
        ("/api/runs/{run_id}/clone", '{"name": %s}', "name"),
        ("/api/runs/{run_id}/clone", '{"tags": [%s]}', "tags"),
    ],
)
@pytest.mark.parametrize("bad", ["lone surrogate", "NUL", "bidi override"])
def test_every_request_naming_something_refuses_bad_text(client, route, body, field, bad):
    run_id = make_run("finetune", "succeeded", name="fine")
    response = client.post(
        route.format(run_id=run_id),
        content=body % BAD_INPUTS[bad],
        headers={"content-type": "application/json"},
    )
    _assert_refused(response, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"kind": "finetune", "dataset": "demo-tiny", "\\udfff": 1}', "body"),  # the key
        ('{"kind": "finetune", "dataset": "demo-tiny", "params": {"\\udfff": 1}}', "params"),
        ('{"kind": "finetune", "dataset": "demo-tiny", "params": {"epochs": "\\udfff"}}', "params"),
        ('{"kind": "\\udfff\\u0000", "dataset": "demo-tiny"}', "kind"),
        ('{"kind": "finetune", "dataset": "\\udfff"}', "dataset"),
    ],
)
def test_bad_text_anywhere_in_a_body_is_refused_in_valid_utf8(client, body, field):
    response = client.post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    text_body = response.content.decode("utf-8")
    assert "\\ud" not in text_body.lower()
    locs = [".".join(str(p) for p in e["loc"]) for e in json.loads(text_body)["detail"]]
    assert any(field in loc for loc in locs), locs


def test_sign_in_next_with_a_control_character_goes_to_the_runs(client):
    response = client.get("/login", params={"next": "/runs\x1b[2J"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/runs"


def test_a_name_longer_than_its_column_is_a_422_not_a_500(client):
    """A limit setting raised past the column's width (VARCHAR(200) on PostgreSQL)."""
    from tests.api.test_limits import limits

    run_id = make_run("finetune", "succeeded", name="fine")
    with limits(max_name_length=1000):
        response = client.patch(f"/api/runs/{run_id}", json={"name": "n" * 300})
    if get_engine().dialect.name == "sqlite":  # SQLite does not enforce VARCHAR lengths
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["type"] == "too_long"


def test_a_number_json_cannot_hold_is_echoed_as_text(client):
    body = '{"dataset": "demo-tiny", "factor": "augmentation", "seeds": Infinity, "priority": NaN}'
    response = client.post(
        "/api/ablations", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert {e["input"] for e in response.json()["detail"]} == {"inf", "nan"}
