"""Browser-facing hardening on every response: security headers and the Host allow-list.

Both wrap the whole app, outside Starlette's error middleware, so a 500 page, a 400 for an
unknown Host, a redirect and a static file all carry the same headers.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.settings import Settings, get_settings

# Scripts only from this site and never inline (pages pass data in <script
# type="application/json">, which is not run). Styles may be inline: Plotly, ReDoc and the
# templates set style attributes. Images as data:/blob: are Plotly's and Swagger's icons;
# blob: workers are ReDoc's search.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
LOOPBACK = tuple(Settings.model_fields["allowed_hosts"].default.split(","))
PROBES = {"/api/health", "/api/ready"}


class SecurityHeaders:
    """Pure ASGI: adds HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostAllowList:
    """Starlette's TrustedHostMiddleware, except for the health probes.

    Probes (Docker, Kubernetes) call by IP address; what they read is no secret, so a
    rebound name gains nothing there.
    """

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.checked = TrustedHostMiddleware(app, allowed_hosts=hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in PROBES:
            await self.app(scope, receive, send)
        else:
            await self.checked(scope, receive, send)


def allowed_hosts(value: str | None = None) -> list[str]:
    """STACKLAB_ALLOWED_HOSTS as host patterns: ports dropped, IPv6 in brackets."""
    text = get_settings().allowed_hosts if value is None else value
    hosts = [_pattern(item) for item in text.split(",") if item.strip()]
    return hosts or list(LOOPBACK)


def _pattern(item: str) -> str:
    host = item.strip().lower()
    if host.startswith("["):  # [::1] or [::1]:8000
        host = host[: host.index("]") + 1] if "]" in host else f"{host}]"
    elif host.count(":") > 1:  # a bare IPv6 address
        host = f"[{host}]"
    elif ":" in host:  # name:port; the Host check ignores ports
        host = host.rsplit(":", 1)[0]
    if "*" in host and host != "*" and not (host.startswith("*.") and "*" not in host[1:]):
        raise ValueError(f"STACKLAB_ALLOWED_HOSTS: {item!r}: use '*' or '*.example.com'")
    return host


def install(app: FastAPI) -> None:
    """Wrap the app's middleware stack: headers outermost, then the Host check."""
    allowed_hosts()  # a malformed setting stops the app at start, not at its first request
    build = app.build_middleware_stack

    def build_hardened() -> ASGIApp:
        # Built on the first request, so the settings in force then are the ones used.
        return SecurityHeaders(HostAllowList(build(), allowed_hosts()))

    # Starlette builds the stack by calling this method: replacing it is the hook we have.
    app.build_middleware_stack = build_hardened  # type: ignore[method-assign]
