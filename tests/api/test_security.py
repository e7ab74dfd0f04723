"""Access control with a token, CSRF protection, and escaping-safe error pages."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import security
from backend.main import create_app
from backend.security import SESSION_COOKIE
from backend.throttle import Throttle
from store.settings import get_settings

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


def test_a_poll_answered_before_routing_still_needs_the_token(guarded):
    """The 304 shortcut for unchanged polls sits inside the access check."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    first = guarded.get("/api/queue", headers=bearer)
    assert first.status_code == 200
    held = {"If-None-Match": first.headers["etag"]}
    assert guarded.get("/api/queue", headers=bearer | held).status_code == 304
    refused = guarded.get("/api/queue", headers=held)
    assert refused.status_code == 401 and refused.json()["detail"].startswith("sign in")


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


# --- the sign-in cookie: expiry, rotation, sign-out, throttling -----------------------------


def _sign_in(client, token: str = TOKEN):
    return client.post("/login", data={"token": token, "next": "/runs"})


def test_the_session_cookie_expires_and_says_so(guarded):
    answer = _sign_in(guarded)
    cookie = answer.headers["set-cookie"]
    assert "Max-Age=43200" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http, STACKLAB_COOKIE_SECURE unset
    value = guarded.cookies.get(SESSION_COOKIE)
    now = time.time()
    assert security.session_valid(value, TOKEN, hours=12, now=now)
    assert not security.session_valid(value, TOKEN, hours=12, now=now + 12 * 3600 + 5)
    old = security.session_value(TOKEN, issued=now - 13 * 3600)
    guarded.cookies.set(SESSION_COOKIE, old)
    assert guarded.get("/api/runs").status_code == 401  # an expired cookie lets nobody in


def test_changing_the_token_signs_everyone_out(guarded):
    assert security.session_valid(security.session_value(TOKEN), TOKEN, hours=1)
    assert not security.session_valid(security.session_value("old-token"), TOKEN, hours=1)
    for forged in ("", "v1", "v1.123", "v1.x.y", "v1.²³.abc", "v2.1.abc", TOKEN):
        assert not security.session_valid(forged, TOKEN, hours=1)
    # the former cookie format (a fixed HMAC of the token) no longer works
    legacy = hmac.new(TOKEN.encode(), b"stacklab-session", hashlib.sha256).hexdigest()
    guarded.cookies.set(SESSION_COOKIE, legacy)
    assert guarded.get("/api/runs").status_code == 401


def test_secure_cookies_when_configured_or_over_https(app_env, monkeypatch):
    monkeypatch.setenv("STACKLAB_TOKEN", TOKEN)
    monkeypatch.setenv("STACKLAB_COOKIE_SECURE", "true")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(), follow_redirects=False) as client:
            assert "Secure" in _sign_in(client).headers["set-cookie"]
        monkeypatch.delenv("STACKLAB_COOKIE_SECURE")
        get_settings.cache_clear()
        app = create_app()
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
            cookies = _sign_in(client).headers.get_list("set-cookie")
            assert cookies and all("Secure" in c for c in cookies)  # session and CSRF
    finally:
        get_settings.cache_clear()


def test_sign_out_needs_the_csrf_field_and_drops_the_cookie(guarded):
    _sign_in(guarded)
    page = guarded.get("/runs")
    assert page.status_code == 200 and 'action="/logout"' in page.text  # the header's link
    csrf = guarded.cookies.get("stacklab_csrf")
    assert f'name="csrf" value="{csrf}"' in page.text
    assert guarded.post("/logout", data={"csrf": "wrong"}).status_code == 403
    cross = guarded.post("/logout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    out = guarded.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (
        'stacklab_session=""' in out.headers["set-cookie"]
        and "Max-Age=0" in out.headers["set-cookie"]
    )
    assert guarded.get("/api/runs").status_code == 401


def test_no_sign_out_link_without_a_token(client):
    assert 'action="/logout"' not in client.get("/runs").text


def test_wrong_tokens_are_throttled_per_address(guarded):
    for _ in range(5):
        assert _sign_in(guarded, "nope").status_code == 401
    blocked = _sign_in(guarded)  # even the right token waits out the minute
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    answer = guarded.get("/api/runs", headers=bearer)
    assert answer.status_code == 429 and "retry-after" in answer.headers
    # a signed-in browser at the same address (NAT) is not locked out
    guarded.cookies.set(SESSION_COOKIE, security.session_value(TOKEN))
    assert guarded.get("/api/runs").status_code == 200


def test_wrong_bearer_tokens_count_too(guarded):
    for _ in range(5):
        assert guarded.get("/api/runs", headers={"Authorization": "Bearer x"}).status_code == 401
    assert guarded.get("/api/runs", headers={"Authorization": "Bearer x"}).status_code == 429


def test_the_throttle_forgets_after_its_window_and_stays_small():
    now = [0.0]
    throttle = Throttle(limit=2, window=60, max_keys=3, clock=lambda: now[0])
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.blocked("a") == 60 and throttle.blocked("b") == 0
    now[0] = 61
    assert throttle.blocked("a") == 0
    for key in "bcdefg":
        throttle.failed(key)
    assert len(throttle) == 3  # a flood of addresses evicts the oldest
    throttle.succeeded("g")
    assert len(throttle) == 2


def test_non_ascii_tokens_are_refused_not_a_500(guarded):
    assert _sign_in(guarded, "tökén-✓").status_code == 401
    header = {"Authorization": "Bearer tökén".encode()}
    assert guarded.get("/api/runs", headers=header).status_code == 401
    cookie = {"Cookie": f"{SESSION_COOKIE}=v1.1.ü".encode()}
    assert guarded.get("/api/runs", headers=cookie).status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/static/css/%2e%2e/js/api.js",
        "/static/css/%2E%2E/js/api.js",
        "/static/css/./../js/api.js".replace(".", "%2e"),
        "/login/%2e%2e/api/runs",
    ],
)
def test_dot_segments_do_not_reach_past_the_public_paths(guarded, path):
    answer = guarded.get(path)
    assert answer.status_code == 400 and "api" not in answer.headers.get("content-type", "")


def test_public_paths_are_exact(guarded):
    assert guarded.get("/static/css/app.css").status_code == 200
    assert guarded.get("/static/js/api.js").status_code == 303  # to the sign-in page
    assert guarded.get("//static/css/app.css").status_code in (303, 404)
    assert guarded.get("/api/healthz").status_code == 401
    # The icon the sign-in page asks for, and nothing beside it.
    assert guarded.get("/static/favicon.svg").status_code == 200
    assert guarded.get("/static/favicon.svg.map").status_code == 303


# --- Lengths and shapes checked before parsing (issue 19, item 3) ---------------------------

HOSTILE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _session_parts() -> tuple[str, str, str, str]:
    version, user, stamp, signature = security.session_value(TOKEN).split(".")
    return version, user, stamp, signature


def test_a_4301_digit_issue_time_is_no_session_not_a_500(guarded):
    version, user, _, signature = _session_parts()
    for stamp in ("9" * 4301, "1" * 13, "-1", "+1", "1_000", "１２３"):
        cookie = f"{SESSION_COOKIE}={version}.{user}.{stamp}.{signature}"
        raw = {"Cookie": cookie.encode()}
        assert guarded.get("/api/runs", headers=raw).status_code == 401, stamp
        page = guarded.get("/runs", headers=raw)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_a_zero_padded_issue_time_is_refused_even_when_its_number_is_signed(guarded):
    version, user, stamp, signature = _session_parts()
    # The signature covers int(stamp): before, "0" + stamp verified as the same cookie.
    guarded.cookies.set(SESSION_COOKIE, f"{version}.{user}.0{stamp}.{signature}")
    assert guarded.get("/api/runs").status_code == 401
    guarded.cookies.set(SESSION_COOKIE, f"{version}.{user}.{stamp}.{signature}")
    assert guarded.get("/api/runs").status_code == 200
    guarded.cookies.set(SESSION_COOKIE, f"{version}.{user}.{stamp}.{signature.upper()}")
    assert guarded.get("/api/runs").status_code == 401
    guarded.cookies.clear()


def test_overlong_values_are_refused_before_any_comparison(monkeypatch):
    compared: list[int] = []
    real = security._same
    monkeypatch.setattr(security, "_same", lambda a, b: compared.append(1) or real(a, b))
    tokens = {"shared": TOKEN}
    assert security.token_owner("x" * (security.MAX_TOKEN_CHARS + 1), tokens) is None
    long_cookie = security.session_value(TOKEN) + "0" * security.MAX_SESSION_CHARS
    assert security.session_user(long_cookie, tokens, hours=1) is None
    assert compared == []
    assert security.token_owner(TOKEN, tokens) == "shared" and compared == [1]


def test_configured_tokens_fit_the_length_checked_at_the_door(monkeypatch):
    from pydantic import ValidationError

    from store.settings import Settings

    with pytest.raises(ValidationError, match="longer than 256"):
        Settings(token="t" * 257)
    with pytest.raises(ValidationError, match="longer than 256"):
        Settings(tokens={"ana": "t" * 257})
    with pytest.raises(ValidationError, match="no IP address"):
        Settings(trusted_proxies="10.0.0.1, proxy.example")
    assert Settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies


def test_a_hostile_csrf_cookie_is_replaced_not_echoed(guarded):
    guarded.post("/login", data={"token": TOKEN, "next": "/runs"})
    hostile = "<x>" + "a" * 5000
    guarded.cookies.set("stacklab_csrf", hostile)
    page = guarded.get("/runs")
    assert page.status_code == 200 and hostile not in page.text
    fresh = page.cookies.get("stacklab_csrf")
    assert fresh and security.CSRF_VALUE.fullmatch(fresh)
    refused = guarded.post("/api/runs", json={}, headers={"X-CSRF-Token": hostile})
    assert refused.status_code == 403
    guarded.cookies.clear()


_stamps = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text("0123456789", min_size=0, max_size=5000),
    st.text(max_size=30),
)
_cookie_values = st.one_of(
    st.text(max_size=400),
    st.binary(max_size=400).map(lambda b: b.decode("latin-1")),
    st.builds(
        lambda user, stamp, sig: f"v2.{user}.{stamp}.{sig}",
        st.sampled_from(["shared", "nobody", "", "shared.x"]),
        _stamps,
        st.one_of(st.text("0123456789abcdefABCDEF", max_size=70), st.text(max_size=70)),
    ),
)


@HOSTILE
@given(
    session=_cookie_values,
    csrf=st.one_of(st.none(), st.text(max_size=300)),
    extra=st.text(max_size=200),
)
def test_any_cookie_header_is_a_401_or_a_sign_in_redirect_never_a_5xx(
    guarded, session, csrf, extra
):
    header = f"{SESSION_COOKIE}={session}; " + (f"stacklab_csrf={csrf}; " if csrf else "") + extra
    raw = {"Cookie": header.encode("utf-8", "surrogatepass")}
    api = guarded.get("/api/runs", headers=raw)
    assert api.status_code < 500 and api.status_code in (200, 400, 401), api.status_code
    page = guarded.get("/runs", headers=raw)
    assert page.status_code < 500
    token = (csrf or "x").encode("utf-8", "surrogatepass")
    post = guarded.post("/api/runs", json={}, headers={**raw, "X-CSRF-Token": token})
    assert post.status_code < 500


@HOSTILE
@given(
    value=st.one_of(
        st.text(max_size=600),
        st.text(max_size=600).map(lambda t: "Bearer " + t),
        st.binary(max_size=600).map(lambda b: b"Bearer " + b),
    ),
    form=st.text(st.characters(exclude_categories=["Cs"]), max_size=600),
)
def test_any_authorization_header_or_token_field_is_never_a_5xx(guarded, value, form):
    guarded.app.state.login_throttle.succeeded("testclient")
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    answer = guarded.get("/api/runs", headers={"Authorization": value})
    assert answer.status_code in (200, 401, 429), answer.status_code
    guarded.app.state.login_throttle.succeeded("testclient")
    signed = guarded.post("/login", data={"token": form, "next": form})
    assert signed.status_code in (303, 401, 422, 429), signed.status_code
    guarded.cookies.clear()
