"""The web's hardening: security headers, the Host allow-list, local API docs, and hostile
input answered with a 4xx (never a 500, never echoed back at length)."""

from __future__ import annotations

import re
import socket
from urllib.parse import quote

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from backend import hardening
from backend.datasets.imports import check_name_syntax
from backend.main import create_app
from cli.serve import serve_allowed_hosts
from store.errors import InvalidRequest
from store.settings import get_settings

HEADERS = {
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "permissions-policy",
}
HUGE = "99999999999999999999"  # beyond int64


def _boom():
    raise RuntimeError("a bug")


@pytest.fixture(scope="module")
def raw(app_env):
    """The app with a route that fails, and server errors answered rather than raised."""
    app = create_app()
    app.add_api_route("/api/boom", _boom)
    app.add_api_route("/boom", _boom)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/runs", 200),  # HTML
        ("/api/runs", 200),  # JSON
        ("/static/css/app.css", 200),  # a static file
        ("/vendor/plotly.min.js", 200),
        ("/docs", 200),
        ("/vendor/docs/swagger-ui-bundle.js", 200),
        ("/", 307),  # a redirect
        ("/api/runs/123456", 404),
        ("/runs/123456", 404),
        ("/api/runs/x", 422),
        ("/static/css/%2e%2e/x", 400),
        ("/api/boom", 500),
        ("/boom", 500),
    ],
)
def test_every_response_carries_the_security_headers(raw, path, status):
    answer = raw.get(path)
    assert answer.status_code == status
    assert set(answer.headers) >= HEADERS, f"missing: {HEADERS - set(answer.headers)}"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert (
        "script-src 'self'" in csp
        and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    )
    assert "Traceback" not in answer.text


def test_pages_run_no_inline_script():
    """The CSP forbids inline code: templates may hold JSON data blocks, nothing to execute."""
    from tests.stack import REPO_ROOT

    offenders = []
    for path in (REPO_ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag and 'type="application/json"' not in tag:
                offenders.append(f"{path.name}: {tag}")
        offenders += [f"{path.name}: {m}" for m in re.findall(r"\son[a-z]+\s*=", text)]
        offenders += [f"{path.name}: javascript: URL" for _ in re.findall(r"javascript:", text)]
    assert offenders == []


# --- the Host allow-list ------------------------------------------------------------------


@pytest.fixture
def default_hosts(app_env, monkeypatch):
    """An app with STACKLAB_ALLOWED_HOSTS unset: its default (loopback names) in force."""
    monkeypatch.delenv("STACKLAB_ALLOWED_HOSTS", raising=False)
    get_settings.cache_clear()
    yield create_app()
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "base",
    ["http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000", "http://LOCALHOST"],
)
def test_loopback_names_are_allowed_by_default(default_hosts, base):
    assert TestClient(default_hosts, base_url=base).get("/api/runs").status_code == 200


@pytest.mark.parametrize(
    "base", ["http://evil.example", "http://testserver", "http://127.0.0.1.evil.example:8000"]
)
def test_other_hosts_are_refused_by_default(default_hosts, base):
    """A DNS-rebound name pointing at 127.0.0.1 still says its own name in Host."""
    client = TestClient(default_hosts, base_url=base)
    answer = client.get("/api/runs")
    assert answer.status_code == 400 and answer.text == "Invalid host header"
    assert "content-security-policy" in answer.headers
    assert client.get("/runs").status_code == 400
    assert client.post("/login", data={"token": "x"}).status_code == 400


def test_health_probes_answer_any_host(default_hosts):
    """Docker and Kubernetes probe by IP address; a probe's answer is no secret."""
    client = TestClient(default_hosts, base_url="http://10.1.2.3:8000")
    assert client.get("/api/health").status_code == 200
    assert client.get("/api/runs").status_code == 400


def test_the_allow_list_is_a_setting(app_env, monkeypatch):
    monkeypatch.setenv("STACKLAB_ALLOWED_HOSTS", "lab.example, *.lab.example")
    get_settings.cache_clear()
    try:
        app = create_app()
        for base, status in [
            ("http://lab.example", 200),
            ("http://gpu.lab.example:8000", 200),
            ("http://localhost", 400),
            ("http://evil.example", 400),
        ]:
            assert TestClient(app, base_url=base).get("/api/runs").status_code == status, base
        monkeypatch.setenv("STACKLAB_ALLOWED_HOSTS", "*")
        get_settings.cache_clear()
        anyone = TestClient(create_app(), base_url="http://whatever.example")
        assert anyone.get("/api/runs").status_code == 200
    finally:
        get_settings.cache_clear()


def test_host_patterns_are_read_forgivingly_and_checked():
    assert hardening.allowed_hosts("Lab.Example:8000, ::1, [fe80::1]:80,, *") == [
        "lab.example",
        "[::1]",
        "[fe80::1]",
        "*",
    ]
    assert hardening.allowed_hosts("") == ["localhost", "127.0.0.1", "[::1]"]
    with pytest.raises(ValueError, match="STACKLAB_ALLOWED_HOSTS"):
        hardening.allowed_hosts("lab.*.example")
    wildcard = serve_allowed_hosts("0.0.0.0").split(",")
    assert wildcard[:3] == ["localhost", "127.0.0.1", "[::1]"]
    assert socket.gethostname().lower() in wildcard  # reachable by this machine's name
    assert serve_allowed_hosts("gpu-box") == "localhost,127.0.0.1,[::1],gpu-box"


# --- API docs from local files ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_only_local_files_and_no_inline_script(raw, path):
    page = raw.get(path)
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href|spec-url)="([^"]+)"', page.text)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    for tag in re.findall(r"<script\b[^>]*>", page.text):
        assert "src=" in tag
    for url in urls:
        if url != "/openapi.json":
            assert raw.get(url).status_code == 200, url


def test_fastapi_cdn_docs_are_gone(raw):
    page = raw.get("/docs").text
    assert "cdn.jsdelivr.net" not in page and "unpkg" not in page
    assert raw.get("/openapi.json").json()["info"]["title"] == "stacklab"


# --- hostile input: a 4xx, never a 500 ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/api/runs/{HUGE}", 404),
        (f"/api/runs/-{HUGE}", 404),
        (f"/runs/{HUGE}", 404),
        (f"/studies/{HUGE}", 404),
        (f"/api/runs/{HUGE}/artifacts/x.h5", 404),
        (f"/groups/{HUGE}", 404),
        (f"/api/groups/{HUGE}/augmentation", 404),
        (f"/api/groups/{HUGE}/ablation", 404),
        (f"/runs/new?clone={HUGE}", 422),
        (f"/api/runs?group_id={HUGE}", 422),
        ("/api/compare?ids=1,%C2%B2", 422),  # "²" passes str.isdigit()
        ("/api/compare?ids=1,%D9%A1%D9%A2", 422),  # Arabic-Indic digits
        (f"/api/compare?ids=1,{HUGE}", 422),
        ("/api/runs/%C2%B2", 422),
    ],
)
def test_numbers_out_of_range_are_a_4xx(raw, path, status):
    assert raw.get(path).status_code == status


@pytest.mark.parametrize("name", [".", "..", "...", ""])
def test_data_set_names_of_only_dots_are_refused(name):
    with pytest.raises(InvalidRequest):
        check_name_syntax(name)
    assert check_name_syntax("cifar.v2") == "cifar.v2"


def test_validation_errors_do_not_echo_large_input(raw):
    answer = raw.post("/api/runs", json={"kind": "pretrain", "dataset": "d" * 50_000, "name": 7})
    assert answer.status_code == 422
    assert len(answer.content) < 5_000, len(answer.content)
    answer = raw.get(f"/runs/new?clone={'9' * 3000}")
    assert answer.status_code == 422 and len(answer.content) < 2_000
    body = raw.post("/api/runs", json={"kind": "pretrain", "params": {"x": ["y" * 1000] * 200}})
    assert body.status_code == 422 and len(body.content) < 20_000


def test_validation_errors_keep_fastapis_shape(raw):
    detail = raw.get("/api/runs/abc").json()["detail"]
    assert detail[0]["loc"] == ["path", "run_id"] and detail[0]["type"] == "int_parsing"
    assert detail[0]["input"] == "abc"


HOSTILE = [
    HUGE,
    f"-{HUGE}",
    "9" * 5000,
    "0",
    "-1",
    "1e3",
    "²",
    "١٢",
    "..",
    ".",
    "x" * 4000,
    "\x00",
    "%",
    "a/b",
    "<script>",
    " ",
]


def _paths(app):
    """(methods, path template, query parameter names) of every route and mount."""
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        query = [q.alias for q in dependant.query_params] if dependant else []
        path = route.path if route.methods else route.path + "/{file}"  # a mount: a file in it
        yield methods, path, query


def test_every_route_answers_hostile_parameters_without_a_500(raw):
    """Each path parameter, then each query parameter of a GET, set to each hostile value."""
    failures = []
    for methods, template, query in _paths(raw.app):
        params = re.findall(r"{([^}:]+)(?::[^}]*)?}", template)
        for value in HOSTILE:
            encoded = quote(value, safe="")
            if params:
                path = re.sub(r"{[^}]+}", encoded, template)
                for method in methods:
                    answer = raw.request(method, path, json={} if method != "GET" else None)
                    if answer.status_code >= 500:
                        failures.append(f"{method} {path[:80]} -> {answer.status_code}")
            if "GET" in methods and not params:
                for name in query:
                    answer = raw.get(f"{template}?{name}={encoded}")
                    if answer.status_code >= 500:
                        failures.append(
                            f"GET {template}?{name}={encoded[:40]} -> {answer.status_code}"
                        )
    assert failures == [], "\n".join(failures)
