"""The web app: `uvicorn backend.main:app`. Never imports TensorFlow, Keras or worker code."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend import api_errors, login, security, web
from backend.compare import pages as compare_pages
from backend.compare import router as compare_router
from backend.config import get_settings
from backend.datasets import pages as datasets_pages
from backend.datasets import router as datasets_router
from backend.db import session_scope, upgrade_schema
from backend.runs import pages as runs_pages
from backend.runs import router as runs_router
from backend.runs import service as runs_service
from backend.studies import pages as studies_pages
from backend.workers import router as workers_router

log = logging.getLogger(__name__)


def _reaper(stop: threading.Event) -> None:
    """Runs whose worker died are marked failed even when no other worker is up."""
    settings = get_settings()
    while not stop.wait(settings.heartbeat_seconds):
        try:
            with session_scope() as session:
                runs_service.reap_stale(session=session, stale_after=settings.stale_after_seconds)
        except Exception:
            log.exception("reaping stale runs failed")


@asynccontextmanager
async def lifespan(_app: FastAPI):
    upgrade_schema()
    stop = threading.Event()
    thread = threading.Thread(target=_reaper, args=(stop,), name="reaper", daemon=True)
    thread.start()
    yield
    stop.set()


def create_app() -> FastAPI:
    """The FastAPI app with every router and error handler."""
    app = FastAPI(title="stacklab", version="0.1.0", lifespan=lifespan)
    api_errors.install(app)
    web.install(app)
    security.install(app)
    app.include_router(login.router)
    for api in (runs_router, datasets_router, workers_router, compare_router):
        app.include_router(api.router, prefix="/api")
    for pages in (runs_pages, compare_pages, studies_pages, datasets_pages):
        app.include_router(pages.router)

    @app.get("/api/health", tags=["meta"])
    def health() -> dict:
        return {"status": "ok"}

    return app


app = create_app()
