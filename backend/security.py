"""Optional access control and protection against cross-site requests.

With STACKLAB_TOKEN (or several named STACKLAB_TOKENS) set, a request is let in with
`Authorization: Bearer <token>` or with the session cookie that /login sets; the token's
name is `request.state.user`. The cookie holds that name and its issue time, signed with a
key derived from the token: it expires after STACKLAB_SESSION_HOURS, and changing the token
invalidates every cookie. Wrong tokens (form or bearer) are throttled per client address.
State-changing requests that rely on a cookie must also carry the X-CSRF-Token header equal
to the `stacklab_csrf` cookie (double submit; /logout takes it as a form field), and any
request a browser marks as cross-site is refused whether or not a token is set.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from backend.throttle import Throttle
from store.settings import MAX_TOKEN_CHARS, SHARED_TOKEN, get_settings

SESSION_COOKIE = "stacklab_session"
CSRF_COOKIE = "stacklab_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# The icon too: a browser asks for it on the sign-in page.
PUBLIC_PATHS = {
    "/login",
    "/logout",
    "/api/health",
    "/api/ready",
    "/favicon.ico",
    "/static/favicon.svg",
}
PUBLIC_PREFIXES = ("/static/css/",)  # the sign-in page's look
FORM_PATHS = {"/login", "/logout"}  # browser forms: they check their own CSRF field
SESSION_VERSION = "v2"  # v2: the cookie names whose token signed it
CLOCK_SKEW_SECONDS = 60
MAX_PATH = 2048  # characters; no page or API path comes near
# Lengths checked before anything is parsed, compared or converted (a hostile value is no
# session and a wrong token, never a 500): ours are ~120 characters (version, a token name of
# at most 40, a 10-digit time, 64 hex digits), the CSRF value 32; a token is at most
# MAX_TOKEN_CHARS (store/settings.py refuses longer ones).
MAX_SESSION_CHARS = 256
MAX_CSRF_CHARS = 128
STAMP = re.compile(r"[1-9][0-9]{0,11}")  # canonical decimal: no sign, no zero padding
SIGNATURE = re.compile(r"[0-9a-f]{64}")
CSRF_VALUE = re.compile(r"[A-Za-z0-9_-]{16,128}")


def _same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two strings of any characters (bytes, so no TypeError)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def _session_key(token: str) -> bytes:
    # A new token, a new key: every cookie signed with the old one stops working.
    return hmac.new(token.encode(), b"stacklab-session-key", hashlib.sha256).digest()


def _signature(token: str, user: str, issued: int) -> str:
    message = f"{SESSION_VERSION}.{user}.{issued}".encode()
    return hmac.new(_session_key(token), message, hashlib.sha256).hexdigest()


def session_value(token: str, issued: float | None = None, user: str = SHARED_TOKEN) -> str:
    """A session cookie issued now (or at `issued`): version, user, issue time, signature."""
    stamp = int(time.time() if issued is None else issued)
    return f"{SESSION_VERSION}.{user}.{stamp}.{_signature(token, user, stamp)}"


def session_user(
    value: str | None, tokens: dict[str, str], *, hours: float, now: float | None = None
) -> str | None:
    """Whose cookie this is: signed with that name's token key, issued within `hours`.

    Its length and the shape of each piece are checked before anything is converted.
    """
    if not value or len(value) > MAX_SESSION_CHARS:
        return None
    version, user, stamp, signature = (value.split(".", 3) + ["", "", "", ""])[:4]
    if version != SESSION_VERSION or user not in tokens:
        return None
    if not (STAMP.fullmatch(stamp) and SIGNATURE.fullmatch(signature)):
        return None
    if not _same(signature, _signature(tokens[user], user, int(stamp))):
        return None
    age = (time.time() if now is None else now) - int(stamp)
    return user if -CLOCK_SKEW_SECONDS <= age < hours * 3600 else None


def session_valid(value: str | None, token: str, *, hours: float, now: float | None = None) -> bool:
    """A cookie of STACKLAB_TOKEN's holder, signed with its key and not expired."""
    return session_user(value, {SHARED_TOKEN: token}, hours=hours, now=now) is not None


def token_owner(given: str | None, tokens: dict[str, str]) -> str | None:
    """The name whose token this is (every one compared, in constant time each).

    A value longer than any token may be is nobody's, before any comparison.
    """
    if not given or len(given) > MAX_TOKEN_CHARS:
        return None
    owners = [name for name, token in tokens.items() if _same(given, token)]
    return owners[0] if owners else None


def cookie_secure(request: Request) -> bool:
    """Secure cookies when configured, or when the request came over https.

    Behind a TLS proxy the scheme is https only when the proxy's X-Forwarded-Proto is
    believed: its address is in STACKLAB_TRUSTED_PROXIES.
    """
    return get_settings().cookie_secure or request.url.scheme == "https"


def client_address(request: Request) -> str:
    """Who to throttle: the peer that connected, or the address a proxy of
    STACKLAB_TRUSTED_PROXIES forwarded (X-Forwarded-For); nobody else's header counts."""
    return request.client.host if request.client else "unknown"


def throttle(request: Request) -> Throttle:
    """The app's record of wrong tokens per client address."""
    return request.app.state.login_throttle


def too_many(request: Request, retry_after: float) -> Response:
    """429 with Retry-After for a client that guessed wrong too often."""
    seconds = max(1, int(retry_after + 0.999))
    return JSONResponse(
        status_code=429,
        content={"detail": f"too many wrong tokens: try again in {seconds} s"},
        headers={"Retry-After": str(seconds)},
    )


def has_dot_segment(path: str) -> bool:
    """`.` or `..` in the (already percent-decoded) path: no browser sends those."""
    return any(part in (".", "..") for part in path.split("/"))


def is_public(path: str) -> bool:
    """Open without a token: sign-in, health, and the sign-in page's stylesheet."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _authenticated(request: Request, tokens: dict[str, str]) -> tuple[str | None, bool]:
    """(who, by_cookie): bearer header or session cookie. A wrong bearer is counted."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        if user := token_owner(header[7:].strip(), tokens):
            return user, False
        throttle(request).failed(client_address(request))
    cookie = request.cookies.get(SESSION_COOKIE)
    if user := session_user(cookie, tokens, hours=get_settings().session_hours):
        return user, True
    return None, False


def _plain_refusal(request: Request, status: int, message: str) -> Response:
    """A refusal before routing: JSON `{"detail": ...}` under /api (what every API refusal
    is, backend/api_responses.py), plain text elsewhere."""
    if request.url.path.startswith("/api"):
        return JSONResponse(status_code=status, content={"detail": message})
    return PlainTextResponse(message, status)


def _refuse(request: Request, status: int, message: str) -> Response:
    # /metrics like /api: a scraper without the token gets a 401, not the sign-in page
    machine = request.url.path.startswith("/api") or request.url.path == "/metrics"
    if machine or request.method not in SAFE_METHODS:
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
    path = request.url.path
    if len(path) > MAX_PATH:  # also keeps a 5000-digit id from Starlette's int() (a 500)
        return _plain_refusal(request, 414, "URI too long")
    if has_dot_segment(path):  # /static/css/../js/x.js must not pass as a public path
        return _plain_refusal(request, 400, "Bad path: '.' and '..' segments are not allowed")
    tokens = get_settings().access_tokens
    by_cookie = False
    if tokens and not is_public(path):
        # Only token guesses wait: a signed cookie cannot be guessed, and a signed-in user
        # behind the same address (NAT) as a guesser keeps working.
        guessing = request.headers.get("authorization", "").lower().startswith("bearer ")
        if guessing and (wait := throttle(request).blocked(client_address(request))):
            return too_many(request, wait)
        user, by_cookie = _authenticated(request, tokens)
        if user is None:
            return _refuse(request, 401, "sign in: this stacklab needs a token")
        request.state.user = user
    request.state.signed_in = by_cookie
    if request.method in SAFE_METHODS:
        return None
    if _cross_site(request):
        return _refuse(request, 403, "cross-site request refused")
    if by_cookie and path not in FORM_PATHS and not csrf_ok(request):
        return _refuse(request, 403, "missing or wrong X-CSRF-Token header")
    return None


def csrf_ok(request: Request, submitted: str | None = None) -> bool:
    """The form field (or else the X-CSRF-Token header) matches the CSRF cookie."""
    given = submitted if submitted is not None else request.headers.get("x-csrf-token")
    if given is None or len(given) > MAX_CSRF_CHARS:
        return False
    return _same(given, csrf_cookie(request))


def csrf_cookie(request: Request) -> str | None:
    """The CSRF cookie when it has the shape of one we set (else none: a new one is set)."""
    value = request.cookies.get(CSRF_COOKIE)
    return value if value is not None and CSRF_VALUE.fullmatch(value) else None


class Guard:
    """The access check as pure ASGI middleware (Starlette's `@app.middleware("http")`
    costs a task and a body stream per request; this costs a header scan).

    Every request gets `request.state.csrf` (the page forms' CSRF value; a new one is set
    as a cookie on the response), `signed_in` and `user` (who launched: a token's name, or
    None on an open site); a refused request never reaches the app.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        state = scope.setdefault("state", {})
        had_csrf = csrf_cookie(request) is not None
        # Pages put the CSRF value in their forms; a new one is set as a cookie below.
        state["csrf"] = csrf_cookie(request) or secrets.token_urlsafe(24)
        state["signed_in"] = False
        state["user"] = None
        refused = _check(request)
        if not had_csrf:
            cookie = _csrf_cookie(state["csrf"], secure=cookie_secure(request))

            async def send_with_cookie(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), cookie]
                await send(message)

            target: Send = send_with_cookie
        else:
            target = send
        if refused is not None:
            await refused(scope, receive, target)
        else:
            await self.app(scope, receive, target)


def _csrf_cookie(value: str, *, secure: bool) -> tuple[bytes, bytes]:
    """The Set-Cookie header for the CSRF cookie, as Starlette would write it."""
    carrier = Response()
    carrier.set_cookie(
        CSRF_COOKIE,
        value,
        samesite="strict",
        httponly=False,  # the page's JS copies it into a header
        secure=secure,
    )
    return next((k, v) for k, v in carrier.raw_headers if k == b"set-cookie")


def install(app: FastAPI) -> None:
    """Add the access check, the login throttle and the CSRF cookie to every request.

    With STACKLAB_TRUSTED_PROXIES set, X-Forwarded-For and -Proto from those addresses name
    the client and scheme the check (and everything inside it) sees; from anyone else, and
    when it is empty, they are ignored. The web is started with uvicorn's --no-proxy-headers
    (cli/processes.py), whose default would believe any process on loopback.
    """
    settings = get_settings()
    app.state.login_throttle = Throttle(limit=settings.login_failures_per_minute, window=60.0)
    app.add_middleware(Guard)
    if proxies := trusted_proxies(settings.trusted_proxies):
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)


def trusted_proxies(setting: str) -> list[str]:
    """STACKLAB_TRUSTED_PROXIES as a list of addresses and networks (empty: none)."""
    return [item.strip() for item in setting.split(",") if item.strip()]
