"""Access control with a token, CSRF protection, and escaping-safe error pages."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend.config import get_settings
from backend.main import create_app

TOKEN = "s3cret-token"


@pytest.fixture
def guarded(app_env, monkeypatch):
    monkeypatch.setenv("STACKLAB_TOKEN", TOKEN)
    get_settings.cache_clear()
    with TestClient(create_app(), follow_redirects=False) as client:
        yield client
    monkeypatch.delenv("STACKLAB_TOKEN")
    get_settings.cache_clear()


def test_with_a_token_every_page_api_and_download_needs_it(guarded):
    assert guarded.get("/api/runs").status_code == 401
    assert guarded.get("/api/runs/1/artifacts/x.weights.h5").status_code == 401
    page = guarded.get("/runs/1")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
    assert guarded.get("/api/health").status_code == 200
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/api/runs", headers=bearer).status_code == 200
    assert guarded.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_login_sets_a_session_and_cookie_posts_need_the_csrf_header(guarded):
    bad = guarded.post("/login", data={"token": "nope", "next": "/runs"})
    assert bad.status_code == 401 and "not right" in bad.text
    ok = guarded.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert ok.status_code == 303 and ok.headers["location"] == "/runs"  # no open redirect
    assert guarded.get("/api/runs").status_code == 200  # the session cookie now works
    body = {"kind": "pretrain", "dataset": "nope"}
    assert guarded.post("/api/runs", json=body).status_code == 403  # cookie but no header
    csrf = guarded.cookies.get("stacklab_csrf")
    answer = guarded.post("/api/runs", json=body, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 422  # past the guard, refused for the unknown data set


def test_cross_site_posts_are_refused_even_without_a_token(client):
    body = {"kind": "pretrain", "dataset": "nope"}
    assert (
        client.post("/api/runs", json=body, headers={"Sec-Fetch-Site": "cross-site"}).status_code
        == 403
    )
    assert (
        client.post("/api/runs", json=body, headers={"Origin": "http://evil.example"}).status_code
        == 403
    )
    assert client.post("/api/runs", json=body).status_code == 422  # scripts and curl are fine


def test_unknown_pages_get_a_404_page_not_a_traceback(client):
    response = client.get("/runs/123456789")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"] and "Traceback" not in response.text
    assert client.get("/no/such/page").status_code == 404
