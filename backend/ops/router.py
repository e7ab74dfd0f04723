"""Operators' endpoints: Prometheus metrics at /metrics (behind the token unless
STACKLAB_METRICS_PUBLIC opens it) and the webhooks' delivery log under /api/ops."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from backend import api_responses
from backend.deps import SessionDep
from backend.ops import http_metrics
from backend.ops.collector import StoreCollector
from store.db import session_scope
from store.notify import service as notify_service
from store.settings import get_settings

METRICS_PATH = "/metrics"

router = APIRouter(tags=["ops"])
metrics_router = APIRouter()


@metrics_router.get(METRICS_PATH, include_in_schema=False)
def metrics(request: Request) -> Response:
    """Every series in Prometheus's text format (the store's read at this scrape)."""
    return _exposition(request.app.state.metrics_registry)


def _exposition(registry: CollectorRegistry) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/ops/webhooks")
def webhook_log(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=notify_service.MAX_LOG)] = 50
) -> list[notify_service.DeliveryRead]:
    """The newest webhook deliveries: event, delivery id, URL (scheme and host), state,
    attempts, the receiver's last answer and when the next attempt is due."""
    return notify_service.log(session=session, limit=limit)


class PublicMetrics:
    """With STACKLAB_METRICS_PUBLIC, GET /metrics is answered here, outside the access
    check; otherwise it goes through it like every page."""

    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry) -> None:
        self.app, self.registry = app, registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("path") == METRICS_PATH
            and scope.get("method") in ("GET", "HEAD")
            and get_settings().metrics_public
        ):
            scope["route"] = METRICS_PATH  # the latency histogram's label
            response = await run_in_threadpool(_exposition, self.registry)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """/metrics, the delivery log, the latency histogram and the store's gauges, in a
    registry of this app's own (no process-wide state). Call after security.install: the
    timer and the public gate sit outside the access check."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(session_scope))
    app.state.metrics_registry = registry
    app.include_router(metrics_router)
    app.include_router(router, prefix="/api", responses=api_responses.ERRORS)
    app.add_middleware(PublicMetrics, registry=registry)
    app.add_middleware(http_metrics.RequestTimer, requests=http_metrics.histogram(registry))
