"""HTTP request latency as a Prometheus histogram, labelled by the route's template
(`/api/runs/{run_id}`, never the raw path), the method and the status: a bounded set of
series whatever paths clients send. Pure ASGI middleware (a header scan's cost)."""

from __future__ import annotations

import re
import time

from prometheus_client import CollectorRegistry, Histogram
from starlette.routing import Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_PREFIX = 64  # characters of an included router's prefix
UNMATCHED = "<unmatched>"  # no route: a 404, or refused before routing (sign-in, 414)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def histogram(registry: CollectorRegistry) -> Histogram:
    """The latency histogram, in the app's own registry."""
    return Histogram(
        "stacklab_http_request_duration_seconds",
        "Time from a request's arrival to its response's last byte, by route template",
        ["method", "route", "status"],
        buckets=BUCKETS,
        registry=registry,
    )


def route_label(scope: Scope) -> str:
    """The matched route's template with its router's prefix (`/api/runs/{run_id}`; a
    mount's prefix for static files; a string: set by a middleware that answered itself)."""
    route = scope.get("route")
    if isinstance(route, str):
        return route
    template = getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return UNMATCHED
    regex = getattr(route, "path_regex", None)
    path = str(scope.get("path", ""))
    if isinstance(route, Mount) or regex is None or regex.fullmatch(path):
        return template
    # A route of an included router knows its template without the router's prefix: the
    # prefix is what precedes the part of the path the template matched (a piece of the
    # literal prefix, never a client's value: the template's parameters take the rest).
    for cut in (i for i, char in enumerate(path) if char == "/" and 0 < i <= MAX_PREFIX):
        if regex.fullmatch(path[cut:]):
            return path[:cut] + template
    return UNMATCHED


class Templates:
    """The route templates this app has answered, learnt as requests reach them, so a
    request answered before routing (a poll's 304 from the shortcut, a refusal of the
    access check) is labelled by the route it asked for. Fixed paths are tried first, as
    the router does (`/api/runs/table` before `/api/runs/{run_id}`). Bounded by the app's
    routes: only templates are kept."""

    def __init__(self) -> None:
        self.known: dict[str, re.Pattern[str]] = {}
        self.order: list[tuple[re.Pattern[str], str]] = []

    def learn(self, template: str) -> None:
        if template in self.known or template == UNMATCHED or not template.startswith("/"):
            return
        self.known[template] = compile_path(template)[0]
        fixed_first = sorted(self.known, key=lambda path: (path.count("{"), path))
        self.order = [(self.known[path], path) for path in fixed_first]

    def find(self, path: str) -> str:
        for pattern, template in self.order:
            if pattern.fullmatch(path):
                return template
        return UNMATCHED


class RequestTimer:
    """Times every HTTP request into the histogram."""

    def __init__(self, app: ASGIApp, *, requests: Histogram) -> None:
        self.app, self.requests = app, requests
        self.templates = Templates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started is answered 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            method = scope.get("method", "")
            self.requests.labels(
                method if method in METHODS else "other", self._label(scope), str(status)
            ).observe(time.perf_counter() - start)

    def _label(self, scope: Scope) -> str:
        label = route_label(scope)
        if label == UNMATCHED:
            return self.templates.find(str(scope.get("path", "")))
        if not isinstance(scope.get("route"), Mount):
            self.templates.learn(label)
        return label
