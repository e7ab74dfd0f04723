"""Every JSON route of the OpenAPI schema, fuzzed against a populated store (issue 19, item 7).

Each operation gets STACKLAB_FUZZ_EXAMPLES requests (default 30) built from its declared
parameters and body: values the schema allows, values from the store (run ids of every kind
in every status, data sets, studies, tags), strings from all of Unicode with lone surrogates,
NUL and values up to a million characters, wrong types, broken JSON and broken UTF-8. Every
answer must be below 500, have a status code and content type its operation declares, a
JSON body matching the declared schema, UTF-8 bytes and no escaped lone surrogate.

A failure prints the request as a reproducible example (`Call(METHOD url, body=...)`); the
server's traceback comes with it (the test client raises what the app raised). Reads run
first on the untouched store, then edits and actions (tests/api/fuzzing.py `operations`).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, assume, given, note, settings

from tests.api import fuzzing

EXAMPLES = int(os.environ.get("STACKLAB_FUZZ_EXAMPLES", "30"))


def _document() -> dict:
    from backend.main import create_app

    return create_app().openapi()


OPERATIONS = [(method, path) for method, path, _ in fuzzing.operations(_document())]


@pytest.fixture(scope="module")
def fuzz(client, app_env):
    """The populated store, the app's schema and a generator aimed at what is stored."""
    backend = "postgres" if "DATABASE_URL" in app_env else "sqlite"
    store = fuzzing.populate(backend)
    document = client.app.openapi()
    return document, fuzzing.Generator(document, fuzzing.hints(store))


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_answers_within_its_schema(fuzz, client, method, path):
    document, generator = fuzz
    operation = document["paths"][path][method.lower()]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(call=generator.call(method, path, operation))
    def answers_within_schema(call):
        assume(len(call.url) <= fuzzing.MAX_URL)
        note(repr(call))  # printed with the failure, whatever the app raised
        response = call.send(client)
        found = fuzzing.problems(document, operation, response)
        assert not found, f"{call!r}\n  " + "\n  ".join(found)

    answers_within_schema()
