"""JSON API for the workers that are online."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from backend.deps import SessionDep
from backend.runs import liveness
from store import clock
from store.runs.models import Run
from store.workers import service as workers_service

router = APIRouter(tags=["workers"])


@router.get("/workers")
def list_workers(session: SessionDep) -> list[dict]:
    """Workers heard within the stale window: host, device, lane, the run each is on, and
    their last heartbeat's age by the database's clock (`silent`: none for two heartbeats)."""
    now = clock.now(session)
    workers = workers_service.online(session, liveness.listed_within(), now=now)
    ids = {w.current_run_id for w in workers if w.current_run_id is not None}
    names = (
        dict(session.execute(select(Run.id, Run.name).where(Run.id.in_(ids))).all()) if ids else {}
    )
    return [liveness.worker_row(w, now, names) for w in workers]
