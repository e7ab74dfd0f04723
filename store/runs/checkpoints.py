"""A run's resume point: the last epoch's checkpoint, one per run, stored in SQL."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from store.artifacts import service as artifacts_service
from store.artifacts.models import Artifact
from store.errors import NotFound
from store.runs.service import get_run
from store.timeutil import utcnow

NAME = "checkpoint.npz"
KIND = "checkpoint"


def save(
    *, session: Session, run_id: int, attempt: int, data: bytes, stage: str, epoch: int
) -> None:
    """Replace the run's checkpoint (call inside the fenced write of the same epoch)."""
    artifacts_service.store_bytes(session=session, data=data, name=NAME, kind=KIND, run_id=run_id)
    get_run(session, run_id).checkpoint = {
        "stage": stage,
        "epoch": int(epoch),
        "attempt": attempt,
        "bytes": len(data),
        "saved_at": utcnow().isoformat(),
    }
    session.flush()


def load(session: Session, run_id: int) -> bytes | None:
    """The run's checkpoint bytes, or None when it has none."""
    if not get_run(session, run_id).checkpoint:
        return None
    try:
        artifact = artifacts_service.run_artifact(session, run_id, NAME)
    except NotFound:
        return None
    return artifacts_service.read_bytes(session, artifact)


def discard(session: Session, run_id: int) -> None:
    """A succeeded run needs no resume point."""
    session.execute(delete(Artifact).where(Artifact.run_id == run_id, Artifact.name == NAME))
    get_run(session, run_id).checkpoint = None
