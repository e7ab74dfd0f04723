"""A data set import's row, from queued to done or failed; every move is one conditional
UPDATE, so a redelivered message, a reaper and a slow worker cannot both win.

queued --claim--> running --finish--> done
                     |  \\--fail----> failed
                     \\--(no heartbeat, or past its time budget: the upkeep)--> failed

Every time that decides (sent_at, started_at, heartbeat_at, finished_at) is the database's
(store.clock), so a worker whose clock is off neither loses its import nor keeps a dead one.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from jobspec.scheduling import Lane
from jobspec.status import ImportState
from store import clock, resend
from store.artifacts.models import Artifact, ArtifactChunk
from store.datasets.models import DatasetImport
from store.dml import execute_dml

MAX_MESSAGE = 4000
# Finished imports (done or failed) are kept this long for their status, then purged.
KEEP_FINISHED = timedelta(days=7)
# A running import may take its parse budget plus this (writing the upload out, storing
# the data set) before the upkeep gives up on it even while its worker still beats.
STORE_SLACK_SECONDS = 300.0


class ImportSuperseded(Exception):
    """This worker no longer holds the import: it was failed by the upkeep or finished."""


def create(
    *,
    session: Session,
    name: str,
    file_name: str,
    upload_artifact_id: int | None,
    resize: bool = False,
    source: str | None = None,
) -> DatasetImport:
    """A queued import, counted as sent now (the caller sends its message after commit)."""
    now = clock.now(session)
    row = DatasetImport(
        name=name,
        file_name=file_name,
        upload_artifact_id=upload_artifact_id,
        resize=resize,
        source=source,
        state=ImportState.QUEUED,
        created_at=now,
        sent_at=now,
    )
    session.add(row)
    session.flush()
    return row


def active_with_name(session: Session, name: str) -> int | None:
    """The id of the queued or running import that holds `name`, if any."""
    return session.scalar(
        select(DatasetImport.id).where(
            DatasetImport.name == name, DatasetImport.state.in_(ImportState.active())
        )
    )


def claim(*, session: Session, import_id: int, worker: str) -> DatasetImport | None:
    """queued -> running for `worker`; None when another delivery got there first."""
    now = clock.now(session)
    touched = execute_dml(
        session,
        update(DatasetImport)
        .where(DatasetImport.id == import_id, DatasetImport.state == ImportState.QUEUED)
        .values(state=ImportState.RUNNING, worker=worker, started_at=now, heartbeat_at=now)
        .execution_options(synchronize_session=False),
    )
    if not touched:
        return None
    return session.get(DatasetImport, import_id, populate_existing=True)


def _held(import_id: int, worker: str) -> ColumnElement[bool]:
    return and_(
        DatasetImport.id == import_id,
        DatasetImport.state == ImportState.RUNNING,
        DatasetImport.worker == worker,
    )


def beat(*, session: Session, import_id: int, worker: str) -> None:
    """Still importing; ImportSuperseded when the import is no longer this worker's."""
    touched = execute_dml(
        session,
        update(DatasetImport)
        .where(_held(import_id, worker))
        .values(heartbeat_at=clock.now(session))
        .execution_options(synchronize_session=False),
    )
    if not touched:
        raise ImportSuperseded(f"import {import_id} is no longer running on {worker}")


def finish(*, session: Session, import_id: int, worker: str, dataset_id: int) -> None:
    """running -> done, in the transaction that registered the data set (else raises)."""
    touched = execute_dml(
        session,
        update(DatasetImport)
        .where(_held(import_id, worker))
        .values(
            state=ImportState.DONE,
            dataset_id=dataset_id,
            finished_at=clock.now(session),
            message=None,
        )
        .execution_options(synchronize_session=False),
    )
    if not touched:
        raise ImportSuperseded(f"import {import_id} was given up on while it was stored")
    drop_upload(session, import_id)


def fail(*, session: Session, import_id: int, message: str, worker: str | None = None) -> bool:
    """running (or queued) -> failed with `message`; False when it had ended already."""
    where = (
        _held(import_id, worker)
        if worker is not None
        else and_(DatasetImport.id == import_id, DatasetImport.state.in_(ImportState.active()))
    )
    touched = execute_dml(
        session,
        update(DatasetImport)
        .where(where)
        .values(
            state=ImportState.FAILED, message=message[:MAX_MESSAGE], finished_at=clock.now(session)
        )
        .execution_options(synchronize_session=False),
    )
    if touched:
        drop_upload(session, import_id)
    return bool(touched)


def hand_back(*, session: Session, import_id: int, worker: str) -> bool:
    """running -> queued, unsent: a stopping worker's import goes to the next worker (the
    upkeep sends it again); False when it was no longer this worker's."""
    touched = execute_dml(
        session,
        update(DatasetImport)
        .where(_held(import_id, worker))
        .values(state=ImportState.QUEUED, worker=None, sent_at=None)
        .values(started_at=None, heartbeat_at=None)
        .execution_options(synchronize_session=False),
    )
    return bool(touched)


def drop_upload(session: Session, import_id: int) -> None:
    """Delete the import's uploaded file (its outcome is in the row now)."""
    artifact_id = session.scalar(
        select(DatasetImport.upload_artifact_id).where(DatasetImport.id == import_id)
    )
    if artifact_id is None:
        return
    session.execute(
        update(DatasetImport)
        .where(DatasetImport.id == import_id)
        .values(upload_artifact_id=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(ArtifactChunk).where(ArtifactChunk.artifact_id == artifact_id))
    session.execute(delete(Artifact).where(Artifact.id == artifact_id))


def reap(*, session: Session, stale_after: float, timeout: float) -> list[tuple[int, str]]:
    """Running imports whose worker went silent for stale_after seconds, or that ran past
    their budget (timeout + STORE_SLACK_SECONDS): failed, upload deleted, name released."""
    now = clock.now(session)
    budget = timeout + max(STORE_SLACK_SECONDS, stale_after)
    silent = (
        DatasetImport.heartbeat_at < now - timedelta(seconds=stale_after),
        f"the worker stopped while importing (no heartbeat for {stale_after:.0f} s: it died, "
        "was killed or lost its machine); upload the file again",
    )
    too_long = (
        DatasetImport.started_at < now - timedelta(seconds=budget),
        f"the import ran for more than {budget:.0f} s and was given up on "
        "(STACKLAB_IMPORT_TIMEOUT_SECONDS)",
    )
    reaped = []
    for condition, message in (silent, too_long):
        running = and_(DatasetImport.state == ImportState.RUNNING, condition)
        for import_id in session.scalars(select(DatasetImport.id).where(running)).all():
            touched = execute_dml(
                session,
                update(DatasetImport)
                .where(DatasetImport.id == import_id, running)
                .values(state=ImportState.FAILED, message=message, finished_at=now)
                .execution_options(synchronize_session=False),
            )
            if touched:
                drop_upload(session, import_id)
                reaped.append((import_id, message))
    return reaped


def due_for_send(session: Session, *, resend_after: float, idle_within: float) -> list[int]:
    """Queued imports sent resend_after seconds ago and not claimed while a worker sat idle:
    their message was lost (a broker restart without persistence, a purge)."""
    now = clock.now(session)
    if not resend.a_worker_is_idle(session, within=idle_within, now=now, lane=Lane.CPU):
        return []
    cutoff = now - timedelta(seconds=resend_after)
    return list(
        session.scalars(
            select(DatasetImport.id)
            .where(
                DatasetImport.state == ImportState.QUEUED,
                or_(DatasetImport.sent_at.is_(None), DatasetImport.sent_at < cutoff),
            )
            .order_by(DatasetImport.id)
        )
    )


def take_for_send(session: Session, import_id: int, *, resend_after: float) -> bool:
    """Claim the right to send import_id's message again now (one process wins)."""
    waiting = DatasetImport.state == ImportState.QUEUED
    return resend.claim_send(session, DatasetImport, import_id, waiting, resend_after=resend_after)


def purge_finished(session: Session, *, keep: timedelta = KEEP_FINISHED) -> int:
    """Forget done and failed imports that ended more than `keep` ago."""
    return execute_dml(
        session,
        delete(DatasetImport).where(
            DatasetImport.state.in_(ImportState.finished()),
            DatasetImport.finished_at < clock.now(session) - keep,
        ),
    )
