"""JSON API for the workers that are online."""

from __future__ import annotations

from fastapi import APIRouter

from backend.deps import SessionDep
from store.settings import get_settings
from store.timeutil import aware
from store.workers import service as workers_service

router = APIRouter(tags=["workers"])


@router.get("/workers")
def list_workers(session: SessionDep) -> list[dict]:
    """Workers seen within three heartbeats: host, device, the run each is on."""
    within = 3 * get_settings().heartbeat_seconds + 5
    return [
        {
            "name": w.name,
            "host": w.host,
            "device": w.device,
            "last_seen": aware(w.last_seen),  # SQLite drops the zone; it is UTC
            "current_run_id": w.current_run_id,
        }
        for w in workers_service.online(session, within)
    ]
