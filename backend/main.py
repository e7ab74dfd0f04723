"""The web app: `uvicorn backend.main:app`. Never imports TensorFlow, Keras or worker code."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from backend import api_errors, api_responses, apidocs, hardening, login, security, web
from backend.body_limit import BodyLimit
from backend.compare import pages as compare_pages
from backend.compare import router as compare_router
from backend.conditional import PollShortcut
from backend.datasets import pages as datasets_pages
from backend.datasets import router as datasets_router
from backend.groups import pages as groups_pages
from backend.groups import router as groups_router
from backend.ops import router as ops_router
from backend.reports import pages as reports_pages
from backend.reports import router as reports_router
from backend.runs import pages as runs_pages
from backend.runs import router as runs_router
from backend.studies import pages as studies_pages
from backend.studies import router as studies_router
from backend.workers import router as workers_router
from store import queue
from store.db import session_scope, upgrade_schema
from store.notify import sender as webhook_sender
from store.runs.upkeep import Upkeep
from store.settings import get_settings

log = logging.getLogger(__name__)


def _upkeep(stop: threading.Event) -> None:
    """Dead workers' runs are reaped and lost messages re-sent even when no worker is up."""
    settings = get_settings()
    upkeep = Upkeep(
        session_scope=session_scope, send=queue.enqueue, waiting=queue.waiting, settings=settings
    )
    while not stop.wait(settings.heartbeat_seconds):
        try:
            upkeep.round()
        except Exception as err:  # the store may be restarting; try again next round
            log.warning("upkeep round failed: %s", err)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    upgrade_schema()
    stop = threading.Event()
    thread = threading.Thread(target=_upkeep, args=(stop,), name="upkeep", daemon=True)
    thread.start()
    webhook_sender.start(stop, session_scope=session_scope, settings=get_settings())
    yield
    stop.set()


def create_app() -> FastAPI:
    """The FastAPI app with every router and error handler."""
    app = FastAPI(
        title="stacklab",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # apidocs serves /docs and /redoc without a CDN
        redoc_url=None,
        dependencies=[Depends(api_errors.ids_in_range)],  # ids beyond int64: 404, not 500
    )
    # innermost: its 413 goes straight to FastAPI's body parsing and on to the error handlers
    app.add_middleware(BodyLimit)
    api_errors.install(app)
    web.install(app)
    app.add_middleware(PollShortcut)  # inside the access check, outside compression
    security.install(app)
    ops_router.install(app)  # /metrics and its latency timer, outside the access check
    hardening.install(app)
    apidocs.install(app)
    app.include_router(login.router)
    for api in (
        runs_router,
        datasets_router,
        workers_router,
        compare_router,
        groups_router,
        studies_router,
        reports_router,
    ):
        app.include_router(api.router, prefix="/api", responses=api_responses.ERRORS)
    for pages in (
        runs_pages,
        compare_pages,
        groups_pages,
        studies_pages,
        datasets_pages,
        reports_pages,
    ):
        app.include_router(pages.router)

    @app.get("/api/health", tags=["meta"])
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/ready", tags=["meta"], responses=api_responses.ERRORS)
    async def ready():
        """200 when the database and the broker answer; 503 naming the part that does not."""
        return await api_errors.readiness()

    return app


app = create_app()
