"""Property-based fuzzing of the JSON API from its own OpenAPI schema (issue 19, item 7).

Plain Hypothesis over `app.openapi()`, no schemathesis: its generators leave lone surrogates
out on purpose ("cannot be encoded for the wire") and its transport encodes query strings
strictly, where this fuzzer has to send them (JSON `\\udfff` escapes, `%ED%BF%BF` in URLs).

- `hostile_text()`: strings from all of Unicode, lone surrogates, NUL and controls included,
  and very long values (up to a million characters);
- `Generator`: a JSON Schema (the FastAPI subset: $ref, anyOf, enum, const, objects, arrays,
  scalars with bounds) -> a strategy, mixing values the schema allows, hostile strings and
  values of the wrong type, with `hints`: values taken from the populated store (run ids,
  data set names, tags) so requests reach past the 404s;
- `Call`: one request (method, path, query, body) that encodes what JSON and URLs cannot
  carry the way a hostile client would, and prints as a reproducible example;
- `problems()`: what is wrong with an answer: a 5xx, a status code or content type the
  schema does not declare, a JSON body that does not match the declared schema, bytes that
  are not UTF-8, strings that are not valid Unicode (escaped lone surrogates);
- `populate()`: runs of every kind in every status, data sets, studies, notes and tags,
  written straight into the store (tests/web/factories.py), no worker.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

# --- strings ------------------------------------------------------------------------------

# Every code point: Hypothesis leaves out the surrogates (category Cs) unless told not to.
EVERY_CHARACTER = st.characters(codec=None, categories=None, exclude_categories=())
SURROGATES = st.characters(categories=["Cs"])
SPECIAL = st.sampled_from(
    [
        "\x00",
        "\udfff",
        "\ud800",
        "\ud83d",  # the first half of an emoji's pair, alone
        "\ufeff",
        "\ufffe",
        "\uffff",
        "\u202e",  # right-to-left override
        "\u200b",
        "\u0085",
        "\u2028",
        "\r\n",
        "\t",
        "\x1b[31m",
        "\x7f",
        "%00",
        "%ED%BF%BF",
        "..",
        "/",
        "\\",
        "'",
        '"',
        "<script>",
        "&amp;",
        " ",
        "ﬁ",  # NFKC changes it
        "İ",  # casefold changes its length
        "\U0010ffff",
        "🙂",
    ]
)
PIECES = st.one_of(EVERY_CHARACTER, EVERY_CHARACTER, SURROGATES, SPECIAL)
LONG_SIZES = (201, 1_001, 10_001, 100_001, 1_000_001)  # characters, in a JSON body
URL_SIZES = (201, 1_001, 2_001)  # in a path or query (see MAX_URL)
MAX_URL = 60_000  # characters: the test client refuses longer URLs (HTTP servers ~8 KB: 414)


def long_text(sizes: tuple[int, ...] = LONG_SIZES) -> st.SearchStrategy[str]:
    """A very long value: one character repeated, with a few others around it."""
    return st.builds(
        lambda head, char, size: head + char * size,
        text_of(max_size=3),
        st.sampled_from(["a", "é", "\x00", "\udfff", "🙂", " ", "\u202e"]),
        st.sampled_from(sizes),
    )


def text_of(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Characters and special pieces (a few are longer than one character) joined."""
    return st.lists(PIECES, min_size=min_size, max_size=max(min_size, max_size)).map("".join)


def hostile_text(
    max_size: int = 30, min_size: int = 0, sizes: tuple[int, ...] = LONG_SIZES
) -> st.SearchStrategy[str]:
    """Strings drawn from all of Unicode, surrogates, NUL and very long values included."""
    short = text_of(max_size, min_size)
    return st.one_of(short, short, short, short, short, long_text(sizes))


def json_values(depth: int = 2, sizes: tuple[int, ...] = LONG_SIZES) -> st.SearchStrategy[Any]:
    """Any JSON value (wrong types where the schema wants another)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_text(12, sizes=sizes),
    )
    if depth <= 0:
        return scalars
    inner = json_values(depth - 1, sizes)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=3),
        st.dictionaries(hostile_text(8, sizes=sizes), inner, max_size=3),
    )


INTEGERS = st.one_of(
    st.integers(min_value=-3, max_value=200),
    st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**40]),
)


# --- the schema -> strategies -------------------------------------------------------------


class Generator:
    """Strategies for values of the app's JSON Schemas, and for whole requests."""

    def __init__(self, document: Mapping[str, Any], hints: Mapping[str, st.SearchStrategy]):
        self.document = document
        self.hints = dict(hints)

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            node: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def value(
        self,
        schema: Mapping[str, Any],
        name: str | None = None,
        depth: int = 0,
        sizes: tuple[int, ...] = LONG_SIZES,
    ) -> st.SearchStrategy[Any]:
        """A value for a field: mostly what the schema allows (or a hint), sometimes not."""
        allowed = self.allowed(schema, depth, sizes)
        options = [allowed, allowed, allowed]
        if name in self.hints:
            options += [self.hints[name]] * 4
        options.append(json_values(1 if depth < 3 else 0, sizes))
        return st.one_of(options)

    def allowed(
        self, schema: Mapping[str, Any], depth: int = 0, sizes: tuple[int, ...] = LONG_SIZES
    ) -> st.SearchStrategy[Any]:
        schema = self.resolve(schema)
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            choice = st.sampled_from(schema["enum"])
            return st.one_of(choice, choice, choice, hostile_text(10, sizes=sizes))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return st.one_of([self.allowed(branch, depth, sizes) for branch in schema[key]])
        if "allOf" in schema:
            return self.allowed(schema["allOf"][0], depth, sizes)
        kind = schema.get("type")
        if isinstance(kind, list):
            return st.one_of([self.allowed({**schema, "type": k}, depth, sizes) for k in kind])
        if kind == "string":
            low = schema.get("minLength", 0)
            high = min(schema.get("maxLength", 40), 40)
            return hostile_text(max(high, low), low, sizes)
        if kind == "integer":
            low, high = schema.get("minimum"), schema.get("maximum")
            if low is not None or high is not None:
                low = None if low is None else math.ceil(low)
                high = None if high is None else math.floor(min(high, 2**63 - 1))
                return st.one_of(st.integers(low, high), INTEGERS)
            return INTEGERS
        if kind == "number":
            return st.one_of(
                st.floats(allow_nan=False, allow_infinity=False),
                st.floats(min_value=-5, max_value=150),
                INTEGERS,
            )
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind == "array":
            items = schema.get("items", {})
            low = schema.get("minItems", 0)
            high = max(low, min(schema.get("maxItems", 4), 4))
            element = self.value(items, None, depth + 1, sizes)
            return st.lists(element, min_size=low, max_size=high)
        if kind == "object" or "properties" in schema:
            return self.object(schema, depth)
        return json_values(1, sizes)

    def object(self, schema: Mapping[str, Any], depth: int) -> st.SearchStrategy[dict]:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = {k: self.value(v, k, depth + 1) for k, v in props.items() if k in required}
        optional = {k: self.value(v, k, depth + 1) for k, v in props.items() if k not in required}
        shaped = st.fixed_dictionaries(fixed, optional=optional)
        extra = st.dictionaries(hostile_text(8), json_values(0), max_size=2)
        if schema.get("additionalProperties") is False or props:
            # mostly the declared keys; sometimes a required one missing or an unknown one
            missing = st.fixed_dictionaries({}, optional={**fixed, **optional})
            with_extra = st.builds(lambda a, b: {**b, **a}, shaped, extra)
            return st.one_of(shaped, shaped, shaped, shaped, missing, with_extra)
        return st.one_of(extra, st.dictionaries(hostile_text(8), json_values(1), max_size=3))

    def call(self, method: str, path: str, operation: Mapping[str, Any]) -> st.SearchStrategy:
        """A whole request for one operation."""
        path_params = {}
        query_params = {}
        for parameter in operation.get("parameters", []):
            where, name = parameter["in"], parameter["name"]
            strategy = self.value(parameter.get("schema", {}), name, sizes=URL_SIZES)
            if where == "path":  # "" or slashes alone would be another route (the list)
                path_params[name] = strategy.filter(
                    lambda value: wire(value).replace("%2F", "") != ""
                )
            elif where == "query":
                query_params[name] = strategy
        body: st.SearchStrategy[Any] = st.just(NO_BODY)
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            schema = content["application/json"].get("schema", {})
            body = st.one_of([self.value(schema, "(body)")] * 6 + [st.just(NO_BODY), RAW_BODIES])
        return st.builds(
            Call,
            st.just(method.upper()),
            st.just(path),
            st.fixed_dictionaries(path_params),
            st.fixed_dictionaries({}, optional=query_params),
            body,
        )


NO_BODY = object()


@dataclasses.dataclass(frozen=True)
class RawBody:
    """Bytes sent as the JSON body: broken UTF-8, broken JSON, what no JSON encoder writes."""

    data: bytes

    def __repr__(self) -> str:
        return f"RawBody({shown(self.data)})"


RAW_BODIES = st.sampled_from(
    [
        RawBody(b'{"name": "\xff\xfe"}'),
        RawBody(b'{"name": "\xed\xbf\xbf", "tags": ["\xc0\x80"]}'),
        RawBody(b'{"notes": "a\x00b"}'),
        RawBody(b'{"name": NaN, "ids": [Infinity]}'),
        RawBody(b'{"name": "' + b"[" * 10_000 + b'"}'),
        RawBody(b"[" * 5_000 + b"]" * 5_000),
        RawBody(b'{"tags": ' + b"[" * 3_000 + b"]" * 3_000 + b"}"),
        RawBody(b'{"name": "x", "name": "y"}'),
        RawBody(b"\xef\xbb\xbf{}"),
        RawBody(b'{"kind": "pretrain"'),
        RawBody(b""),
        RawBody(b"null"),
        RawBody(b'"\\udfff"'),
        RawBody(b'{"ids": [1e400], "seeds": [1e400]}'),
    ]
)


def wire(value: Any) -> str:
    """A path or query value percent-encoded as a client would send it; a lone surrogate
    goes out as its three UTF-8-shaped bytes (%ED%BF%BF), which are not UTF-8."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def path_segment(value: Any) -> str:
    """A path parameter as it goes on the wire. A segment of "." or ".." is a dot-segment
    that every client removes before sending (RFC 3986 5.2.4: `/api/runs/.` is sent as
    `/api/runs`, another route), so its dots are percent-encoded: the server then receives
    the value itself."""
    segment = wire(value)
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


@dataclasses.dataclass
class Call:
    """One request; its repr is a reproducible example (long runs of a character shortened
    to an expression)."""

    method: str
    template: str
    path_params: dict[str, Any]
    query: dict[str, Any]
    body: Any = NO_BODY

    @property
    def url(self) -> str:
        path = self.template
        for name, value in self.path_params.items():
            path = path.replace("{" + name + "}", path_segment(value))
        pairs = []
        for name, value in self.query.items():
            for item in value if isinstance(value, list) else [value]:
                pairs.append(f"{wire(name)}={wire(item)}")
        return path + ("?" + "&".join(pairs) if pairs else "")

    def content(self) -> bytes | None:
        if self.body is NO_BODY:
            return None
        if isinstance(self.body, RawBody):
            return self.body.data
        return json.dumps(self.body, ensure_ascii=True).encode("ascii")

    def send(self, client) -> Any:
        data = self.content()
        headers = {"content-type": "application/json"} if data is not None else {}
        return client.request(self.method, self.url, content=data, headers=headers)

    def __repr__(self) -> str:
        body = "" if self.body is NO_BODY else f", body={shown(self.body)}"
        return f"Call({self.method} {shown(self.url)}{body})"

    def _repr_pretty_(self, printer, cycle) -> None:  # how Hypothesis prints an example
        printer.text(repr(self))


_RUNS = re.compile(r"(.)\1{20,}", re.DOTALL)
_RUNS_OF_BYTES = re.compile(rb"(.)\1{20,}", re.DOTALL)


def shown(value: Any, limit: int = 600) -> str:
    """repr with long runs of one character written as `'x' * n`, cut at `limit`."""
    if isinstance(value, str | bytes):
        runs = _RUNS_OF_BYTES if isinstance(value, bytes) else _RUNS
        out, plain = [], 0  # value[plain:] is not yet written
        for match in runs.finditer(value):
            if plain < match.start():
                out.append(repr(value[plain : match.start()]))
            out.append(f"{value[match.start() : match.start() + 1]!r} * {len(match.group())}")
            plain = match.end()
        if plain < len(value) or not out:
            out.append(repr(value[plain:]))
        text = " + ".join(out)
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{shown(k)}: {shown(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(shown(v) for v in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


# --- the answers --------------------------------------------------------------------------


def problems(document: Mapping[str, Any], operation: Mapping[str, Any], response) -> list[str]:
    """Everything wrong with an answer, by the schema's own declarations."""
    found = []
    status = response.status_code
    if status >= 500:
        found.append(f"server error {status}: {response.content[:300]!r}")
        return found
    declared = operation.get("responses", {})
    spec = (
        declared.get(str(status)) or declared.get(f"{str(status)[0]}XX") or declared.get("default")
    )
    if spec is None:
        found.append(f"status {status} is not declared (declared: {sorted(declared)})")
    media = response.headers.get("content-type", "").split(";")[0].strip()
    content = (spec or {}).get("content") or {}
    if content and media not in content:
        found.append(f"content type {media!r} for {status}; declared {sorted(content)}")
    text = None
    if media.startswith("text/") or media.endswith(("json", "+xml", "javascript")):
        try:
            text = response.content.decode("utf-8")
        except UnicodeDecodeError as err:
            found.append(f"the body is not UTF-8 ({err})")
    if text is not None and media.endswith("json"):
        try:
            body = json.loads(text)
        except ValueError as err:
            found.append(f"the body is not JSON ({err})")
            return found
        bad = next(invalid_strings(body), None)
        if bad is not None:
            found.append(f"the JSON holds a string that is not valid Unicode: {shown(bad, 80)}")
        schema = content.get(media, {}).get("schema") if spec else None
        if schema:
            error = schema_error(document, schema, body)
            if error:
                found.append(f"the body does not match its schema: {error}")
    return found


def invalid_strings(value: Any) -> Iterator[str]:
    """Strings (keys too) that cannot be encoded as UTF-8: escaped lone surrogates."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from invalid_strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from invalid_strings(key)
            yield from invalid_strings(item)


_VALIDATORS: dict[tuple[int, str], Any] = {}


def schema_error(document: Mapping[str, Any], schema: Mapping[str, Any], body: Any) -> str | None:
    """The first way `body` breaks `schema` (refs resolved in the document), or None."""
    from jsonschema import Draft202012Validator

    key = (id(document), json.dumps(schema, sort_keys=True))
    validator = _VALIDATORS.get(key)
    if validator is None:
        root = {**schema, "components": document.get("components", {})}
        validator = _VALIDATORS[key] = Draft202012Validator(root)
    error = next(iter(validator.iter_errors(body)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"at /{where}: {shown(error.message, 300)}"


def operations(document: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(method, path, operation) of every JSON route under /api, reads first, the
    actions that change or delete runs last (bulk delete at the very end)."""
    found = []
    for path, ops in document["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in ops.items():
            found.append((method.upper(), path, operation))
    order = {"GET": 0, "PATCH": 1, "POST": 2}
    return sorted(found, key=lambda op: (order.get(op[0], 3), op[1] == "/api/runs/bulk", op[1]))


# --- the populated store ------------------------------------------------------------------


@dataclasses.dataclass
class Store:
    """What populate() wrote: ids and names the fuzzer aims at."""

    runs: dict[tuple[str, str], int]  # (kind, status) -> run id
    groups: list[int]
    datasets: list[str]
    tags: list[str]
    names: list[str]

    @property
    def run_ids(self) -> list[int]:
        return sorted(self.runs.values())


STORED_TAGS = ["smoke", "factor:augmentation", "seed:0", "élan", "日本語", "a b", "<b>tag</b>"]


def populate(backend: str) -> Store:
    """Runs of every kind in every status, with metrics, files, results, notes and tags;
    an ablation study and an old augmentation study; a second data set; a run whose stored
    name, tags and notes hold what older versions let in (written in SQL)."""
    from sqlalchemy import update

    from jobspec.status import RunStatus
    from store.db import session_scope
    from store.runs.models import Run
    from tests.web.factories import (
        finetune_result,
        make_ablation,
        make_run,
        make_tune_study,
        npz_bytes,
        reconstructions_npz,
    )
    from tests.web.report_factories import make_finetune, make_pretrain, set_notes
    from worker.datasets import register
    from worker.ml.datasets.demo import make_demo

    register(make_demo(seed=1, n_train=30, n_test=10), name="données ✓ 日本")
    runs: dict[tuple[str, str], int] = {}
    pretrain = make_pretrain("fuzz pretrain", notes="## notes\n\n*kept* <b>raw</b> `code`")
    runs[("pretrain", "succeeded")] = pretrain
    runs[("finetune", "succeeded")] = make_finetune(pretrain, name="fuzz finetune")
    runs[("tune", "succeeded")] = make_tune_study(
        {},
        [(3, "adam", 0.05), (5, "sgd", 0.07)],
        name="fuzz tune",
        result={"best_params": {"kernel_size": 3}, "best_value": 0.05, "trials": 2},
    )
    progress = {"stage": "ae01", "epoch": 1, "epochs": 2}
    for kind in ("pretrain", "tune", "finetune"):
        for status in RunStatus:
            if (kind, status.value) in runs:
                continue
            extra: dict[str, Any] = {}
            if kind == "finetune":
                extra["parent_run_id"] = pretrain
                extra["artifacts"] = {"predictions.npz": npz_bytes(predictions=[0, 1, 2])}
            if kind == "pretrain" and status is not RunStatus.QUEUED:
                extra["artifacts"] = {"reconstructions.npz": reconstructions_npz(2)}
                extra["metrics"] = {"ae01/loss": [0.1, 0.08], "ae01/val_loss": [0.12, 0.1]}
            if status is RunStatus.FAILED:
                extra["error"] = "RuntimeError: boom \u202e"
                extra["traceback"] = "Traceback (most recent call last):\n  boom"
            if status is RunStatus.RUNNING:
                extra["progress"] = progress
            runs[(kind, status.value)] = make_run(
                kind,
                status.value,
                name=f"fuzz {kind} {status.value} ✓",
                tags=STORED_TAGS[: 2 + len(runs) % 5],
                samples={"rss_mb": [(0.0, 100.0), (1.0, 120.0)]},
                **extra,
            )
    set_notes(runs[("finetune", "failed")], "# Why\n\n" + "long notes " * 500)
    ablation = make_ablation("augmentation", {0: (12, 16), 1: (13, 15)}, name="fuzz study ✓")
    legacy = make_ablation(
        "augmentation", {0: (10, 11)}, name="old study", legacy=True, running={0: "on"}
    )
    odd = make_run(
        "finetune",
        "succeeded",
        name="odd",
        parent_run_id=pretrain,
        result=finetune_result(["cat", "dög", "\u202eevil", "x" * 100]),
    )
    # What versions before the text type stored: controls, RTL, very long (NUL on SQLite;
    # PostgreSQL never stored it). Lone surrogates cannot go through the driver at all.
    nul = "\x00" if backend == "sqlite" else ""
    with session_scope() as session:
        session.execute(
            update(Run)
            .where(Run.id == odd)
            .values(
                name=f"old{nul}\x1b[31m\u202ename " + "é" * 180,  # the column holds 200
                tags=[f"t{nul}ag", "\x07bell", "x" * 5000],
                notes=f"notes{nul}\x0b" + "\u0301" * 1000,
            )
        )
    runs[("finetune", "odd")] = odd
    return Store(
        runs=runs,
        groups=[ablation, legacy],
        datasets=["demo-tiny", "données ✓ 日本"],
        tags=STORED_TAGS,
        names=[f"fuzz {k} {s} ✓" for k, s in runs],
    )


def hints(store: Store) -> dict[str, st.SearchStrategy]:
    """Values from the store for fields of these names, so requests reach past the 404s."""
    run_id = st.sampled_from(store.run_ids)
    dataset = st.sampled_from(store.datasets)
    tag = st.sampled_from(store.tags)
    kind = st.sampled_from(["pretrain", "tune", "finetune"])
    params = st.one_of(
        st.just({}),
        st.just({"epochs": 1}),
        st.just({"ae01": {"epochs": 1}, "ae02": {"epochs": 1}, "ae03": {"epochs": 1}}),
        st.just({"n_trials": 2, "epochs": 1}),
        st.dictionaries(st.sampled_from(["epochs", "seed", "augment", "stage"]), json_values(0)),
    )
    return {
        "run_id": run_id,
        "parent_run_id": st.sampled_from([store.runs[("pretrain", "succeeded")], *store.run_ids]),
        "source_run_id": run_id,
        "group_id": st.sampled_from(store.groups),
        "ids": st.one_of(
            st.lists(run_id, min_size=1, max_size=4).map(lambda ids: ",".join(map(str, ids))),
            st.lists(run_id, min_size=1, max_size=4),
        ),
        "name": st.one_of(dataset, st.sampled_from(store.names), st.just("artifact.npz")),
        "dataset": dataset,
        "kind": kind,
        "tag": tag,
        "tags": st.lists(st.one_of(tag, hostile_text(20)), max_size=4),
        "params": params,
        "seeds": st.lists(st.integers(0, 3), min_size=2, max_size=3),
        "index": st.integers(-2, 25),
        "true": st.integers(0, 11),
        "pred": st.integers(0, 11),
        "notes": st.one_of(hostile_text(40), long_text()),
        "q": st.one_of(tag, hostile_text(10, sizes=URL_SIZES)),
        "version": st.sampled_from(["", "1", "abc"]),
    }
