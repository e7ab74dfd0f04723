"""Optional access control and protection against cross-site requests.

With STACKLAB_TOKEN set, a request is let in with `Authorization: Bearer <token>` or with
the session cookie that /login sets. State-changing requests that rely on a cookie must
also carry the X-CSRF-Token header equal to the `stacklab_csrf` cookie (double submit),
and any request a browser marks as cross-site is refused whether or not a token is set.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from backend.config import get_settings

SESSION_COOKIE = "stacklab_session"
CSRF_COOKIE = "stacklab_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PUBLIC_PATHS = ("/login", "/static/css/", "/api/health", "/api/ready")


def session_value(token: str) -> str:
    """What the session cookie holds: derived from the token, so nothing is stored."""
    return hmac.new(token.encode(), b"stacklab-session", hashlib.sha256).hexdigest()


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a, b)


def authenticated(request: Request, token: str) -> tuple[bool, bool]:
    """(allowed, by_cookie): bearer header or session cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and _same(header[7:].strip(), token):
        return True, False
    if _same(request.cookies.get(SESSION_COOKIE), session_value(token)):
        return True, True
    return False, False


def _refuse(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api") or request.method not in SAFE_METHODS:
        return JSONResponse(status_code=status, content={"detail": message})
    target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return RedirectResponse(f"/login?next={target}", status_code=303)


def _cross_site(request: Request) -> bool:
    """What the browser says of where the request came from (API clients say nothing)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    return (
        bool(origin) and origin != "null" and urlsplit(origin).netloc != request.headers.get("host")
    )


def _check(request: Request) -> Response | None:
    token = get_settings().token
    by_cookie = False
    if token and not request.url.path.startswith(PUBLIC_PATHS):
        allowed, by_cookie = authenticated(request, token)
        if not allowed:
            return _refuse(request, 401, "sign in: this stacklab needs a token")
    if request.method in SAFE_METHODS or request.url.path == "/login":
        return None
    if _cross_site(request):
        return _refuse(request, 403, "cross-site request refused")
    if by_cookie and not _same(
        request.headers.get("x-csrf-token"), request.cookies.get(CSRF_COOKIE)
    ):
        return _refuse(request, 403, "missing or wrong X-CSRF-Token header")
    return None


def install(app: FastAPI) -> None:
    """Add the access check and the CSRF cookie to every request."""

    @app.middleware("http")
    async def guard(request: Request, call_next) -> Response:
        refused = _check(request)
        response = refused or await call_next(request)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(
                CSRF_COOKIE, secrets.token_urlsafe(24), samesite="strict", httponly=False
            )  # the page's JS copies it into a header
        return response
