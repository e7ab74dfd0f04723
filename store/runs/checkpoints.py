"""A run's resume point: the last epoch's checkpoint, one per run, stored in SQL.

A worker streams it in first (store.runs.staging), then `publish`es it with its epoch's
metrics in one short fenced transaction; `save` writes it in the caller's transaction."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from store.artifacts import service as artifacts_service
from store.artifacts.models import Artifact
from store.errors import NotFound
from store.runs import staging
from store.runs.models import CheckpointInfo, Run
from store.runs.service import get_run
from store.timeutil import utcnow

NAME = "checkpoint.npz"
KIND = "checkpoint"


def save(
    *, session: Session, run_id: int, attempt: int, data: bytes, stage: str, epoch: int
) -> None:
    """Replace the run's checkpoint (call inside the fenced write of the same epoch)."""
    artifacts_service.store_bytes(session=session, data=data, name=NAME, kind=KIND, run_id=run_id)
    get_run(session, run_id).checkpoint = _pointer(attempt, len(data), stage, epoch)
    session.flush()


def publish(
    *, session: Session, run_id: int, attempt: int, staged_id: int, stage: str, epoch: int
) -> None:
    """Make a staged checkpoint the run's resume point, replacing the old one (call inside
    the fenced write of the same epoch; the run's row is written last)."""
    artifact = staging.publish(session, run_id=run_id, attempt=attempt, staged_id=staged_id)
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(checkpoint=_pointer(attempt, artifact.size, stage, epoch))
        .execution_options(synchronize_session=False)
    )


def _pointer(attempt: int, size: int, stage: str, epoch: int) -> CheckpointInfo:
    return {
        "stage": stage,
        "epoch": int(epoch),
        "attempt": attempt,
        "bytes": size,
        "saved_at": utcnow().isoformat(),
    }


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
