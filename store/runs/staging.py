"""A run's big files (checkpoints, result files) streamed in without making liveness wait.

A worker streams the bytes into a *staged* artifact: run_id NULL, staged_for_run_id and
staged_attempt naming the attempt that writes it, one chunk per short transaction. No
listing or download sees it (they select by run_id or dataset_id), and no transaction of
the stream touches the run's row, so the run's heartbeat (its own tiny transaction) never
waits for it: a slow store slows the stream, not liveness. The attempt then `publish`es
it in one short fenced transaction: the run's old file of that name goes, the staged one
takes its place.

A stream whose worker died or whose attempt was superseded can never be published: the
run's next claim deletes what it left (artifacts.service.discard_staged) and so does the
upkeep (`sweep`), which keeps a stream of a live attempt however long it takes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobspec.status import RunStatus
from store.artifacts.models import CHUNK_BYTES, Artifact, ArtifactChunk
from store.artifacts.service import kind_of
from store.dml import execute_dml
from store.errors import AttemptSuperseded
from store.runs import attempts
from store.runs.models import Run

Scope = Callable[[], AbstractContextManager[Session]]
DISCARDED = "its staged file was discarded: the run was claimed again or ended"


def chunk_stored(run_id: int, name: str, seq: int) -> None:
    """Called after each chunk's transaction commits (a seam: tests slow the store here)."""


def stage_bytes(
    *, scope: Scope, run_id: int, attempt: int, name: str, data: bytes, kind: str | None = None
) -> int:
    """Stream bytes in memory (a checkpoint) into a staged artifact; returns its id."""
    view = memoryview(data)
    chunks = (bytes(view[at : at + CHUNK_BYTES]) for at in range(0, len(data), CHUNK_BYTES))
    return _stage(scope, run_id, attempt, name, kind or kind_of(name), chunks)


def stage_file(*, scope: Scope, run_id: int, attempt: int, path: Path) -> int:
    """Stream a file into a staged artifact, one chunk in memory at a time; returns its id."""
    with path.open("rb") as fh:
        chunks = iter(lambda: fh.read(CHUNK_BYTES), b"")
        return _stage(scope, run_id, attempt, path.name, kind_of(path.name), chunks)


def _stage(
    scope: Scope, run_id: int, attempt: int, name: str, kind: str, chunks: Iterator[bytes]
) -> int:
    digest, size, artifact_id, seq = hashlib.sha256(), 0, None, 0
    chunk = next(chunks, None)  # None: an empty file (a row, no chunk)
    try:
        while True:
            following = None if chunk is None else next(chunks, None)
            if chunk is not None:
                digest.update(chunk)
                size += len(chunk)
            with scope() as session:
                attempts.guard(session)
                staged = artifact_id or _create(session, run_id, attempt, name, kind)
                if chunk is not None:
                    session.execute(
                        insert(ArtifactChunk), [{"artifact_id": staged, "seq": seq, "data": chunk}]
                    )
                if following is None:  # the last chunk: the file is whole
                    session.execute(
                        update(Artifact)
                        .where(Artifact.id == staged)
                        .values(size=size, sha256=digest.hexdigest())
                        .execution_options(synchronize_session=False)
                    )
                _check_owner(session, run_id, attempt)
            artifact_id = staged
            chunk_stored(run_id, name, seq)
            if following is None:
                return artifact_id
            chunk, seq = following, seq + 1
    except IntegrityError as err:
        if artifact_id is None:
            raise
        # Its staged row is gone (a chunk's foreign key failed): a claim or a sweep
        # discarded it, which they do only to attempts that no longer own the run.
        raise AttemptSuperseded(run_id, attempt, DISCARDED) from err
    except BaseException:
        _forget(scope, artifact_id)
        raise


def _create(session: Session, run_id: int, attempt: int, name: str, kind: str) -> int:
    # What an earlier try of this attempt left of the same file (a store blip mid-stream).
    session.execute(
        delete(Artifact).where(
            Artifact.staged_for_run_id == run_id,
            Artifact.staged_attempt == attempt,
            Artifact.name == name,
        )
    )
    artifact = Artifact(
        run_id=None,
        staged_for_run_id=run_id,
        staged_attempt=attempt,
        name=name,
        kind=kind,
        size=0,
    )
    session.add(artifact)
    session.flush()
    return artifact.id


def _check_owner(session: Session, run_id: int, attempt: int) -> None:
    """Stop a superseded attempt's stream at its next chunk, not only at its publish."""
    row = session.execute(select(Run.status, Run.attempts).where(Run.id == run_id)).first()
    if row is None:
        raise AttemptSuperseded(run_id, attempt, "the run was deleted")
    status, current = row
    if status != RunStatus.RUNNING or current != attempt:
        raise AttemptSuperseded(run_id, attempt, f"attempt {current} holds the run ({status})")


def _forget(scope: Scope, artifact_id: int | None) -> None:
    """Best effort: drop a stream cut short (else the next try, a claim or a sweep does)."""
    if artifact_id is None:
        return
    try:
        with scope() as session:
            session.execute(delete(Artifact).where(Artifact.id == artifact_id))
    except Exception:  # the store is what failed: leave it to the others
        pass


def publish(session: Session, *, run_id: int, attempt: int, staged_id: int) -> Artifact:
    """The staged file becomes the run's file of its name, replacing the old one (in the
    caller's transaction, which fences the attempt before it commits). Publishing it again
    (a retry after a commit whose answer was lost) changes nothing."""
    row = session.execute(
        select(
            Artifact.name, Artifact.run_id, Artifact.staged_for_run_id, Artifact.staged_attempt
        ).where(Artifact.id == staged_id)
    ).first()
    if row is not None and (row.run_id, row.staged_for_run_id) == (run_id, None):
        return session.get_one(Artifact, staged_id)  # published already
    if row is None or (row.staged_for_run_id, row.staged_attempt) != (run_id, attempt):
        raise AttemptSuperseded(run_id, attempt, DISCARDED)
    session.execute(delete(Artifact).where(Artifact.run_id == run_id, Artifact.name == row.name))
    touched = execute_dml(
        session,
        update(Artifact)
        .where(Artifact.id == staged_id, Artifact.staged_for_run_id == run_id)
        .values(run_id=run_id, staged_for_run_id=None, staged_attempt=None)
        .execution_options(synchronize_session=False),
    )
    if not touched:  # a claim discarded it meanwhile
        raise AttemptSuperseded(run_id, attempt, DISCARDED)
    return session.get_one(Artifact, staged_id, populate_existing=True)


def sweep(session: Session) -> int:
    """Delete staged files no attempt can publish any more (their run ended, was deleted or
    belongs to a later attempt); returns how many. A live attempt's stream is kept, however
    long it has been going: age says nothing about a stream on a slow link."""
    orphans = (
        select(Artifact.id)
        .outerjoin(Run, Run.id == Artifact.staged_for_run_id)
        .where(
            Artifact.staged_for_run_id.is_not(None),
            or_(
                Run.id.is_(None),
                Run.status != RunStatus.RUNNING,
                Run.attempts != Artifact.staged_attempt,
            ),
        )
        .with_for_update(of=Artifact, skip_locked=True)
    )
    ids = list(session.scalars(orphans))
    if ids:  # their chunks cascade
        session.execute(delete(Artifact).where(Artifact.id.in_(ids)))
    return len(ids)
