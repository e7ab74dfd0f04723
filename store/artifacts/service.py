"""Store files in SQL in 1 MiB chunks and stream them back: one chunk in memory at a time."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from store.artifacts.models import CHUNK_BYTES, Artifact, ArtifactChunk
from store.errors import NotFound

KINDS = {
    ".weights.h5": "weights",
    ".keras": "model",
    ".png": "figure",
    ".csv": "metrics",
    ".json": "manifest",
}
NPZ_KINDS = {"reconstructions.npz": "reconstructions", "predictions.npz": "predictions"}


def kind_of(name: str) -> str:
    """The artifact kind a file name implies."""
    if name in NPZ_KINDS:
        return NPZ_KINDS[name]
    for suffix, kind in KINDS.items():
        if name.endswith(suffix):
            return kind
    return "file"


def store_bytes(*, session: Session, data: bytes, name: str, kind: str, run_id: int) -> Artifact:
    """Like store_file, for bytes already in memory (a checkpoint)."""
    session.execute(delete(Artifact).where(Artifact.run_id == run_id, Artifact.name == name))
    artifact = Artifact(run_id=run_id, name=name, kind=kind, size=len(data))
    artifact.sha256 = hashlib.sha256(data).hexdigest()
    session.add(artifact)
    session.flush()
    view = memoryview(data)
    for seq, start in enumerate(range(0, len(data), CHUNK_BYTES)):
        chunk = bytes(view[start : start + CHUNK_BYTES])
        session.execute(
            insert(ArtifactChunk), [{"artifact_id": artifact.id, "seq": seq, "data": chunk}]
        )
    return artifact


def read_bytes(session: Session, artifact: Artifact) -> bytes:
    """A (small) artifact's whole content, checked against its sha256."""
    data = b"".join(iter_chunks(session, artifact.id))
    if artifact.sha256 and hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise OSError(f"artifact {artifact.id} ({artifact.name}) failed its sha256 check")
    return data


def discard_staged(session: Session, run_id: int) -> int:
    """Delete the files earlier attempts of the run were still streaming in (never shown);
    returns how many. One a stalled stream still writes into (PostgreSQL: locked) is left
    to the upkeep's sweep rather than waited for."""
    staged = (
        select(Artifact.id)
        .where(Artifact.staged_for_run_id == run_id)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(staged))
    if ids:  # their chunks cascade
        session.execute(delete(Artifact).where(Artifact.id.in_(ids)))
    return len(ids)


def drop_run_files_except(session: Session, run_id: int, keep: set[str]) -> None:
    """Delete the run's artifacts not named in keep (call after storing the new set)."""
    session.execute(delete(Artifact).where(Artifact.run_id == run_id, Artifact.name.not_in(keep)))


def store_file(
    *,
    session: Session,
    path: Path,
    name: str | None = None,
    kind: str | None = None,
    run_id: int | None = None,
    dataset_id: int | None = None,
) -> Artifact:
    """Copy a file into the store chunk by chunk; replaces a same-named artifact of the run."""
    name = name or path.name
    if run_id is not None:
        session.execute(delete(Artifact).where(Artifact.run_id == run_id, Artifact.name == name))
    artifact = Artifact(
        run_id=run_id, dataset_id=dataset_id, name=name, kind=kind or kind_of(name), size=0
    )
    session.add(artifact)
    session.flush()
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        for seq, chunk in enumerate(iter(lambda: fh.read(CHUNK_BYTES), b"")):
            session.execute(
                insert(ArtifactChunk), [{"artifact_id": artifact.id, "seq": seq, "data": chunk}]
            )
            digest.update(chunk)
            size += len(chunk)
    artifact.size, artifact.sha256 = size, digest.hexdigest()
    session.flush()
    return artifact


def get_artifact(session: Session, artifact_id: int) -> Artifact:
    """One artifact's record, or NotFound."""
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFound("artifact", artifact_id)
    return artifact


def run_artifact(session: Session, run_id: int, name: str) -> Artifact:
    """A run's artifact by file name, or NotFound."""
    artifact = session.scalar(
        select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name)
    )
    if artifact is None:
        raise NotFound("artifact", f"{name} of run {run_id}")
    return artifact


def list_run_artifacts(session: Session, run_id: int) -> list[Artifact]:
    """A run's artifacts by name."""
    return list(
        session.scalars(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.name))
    )


def iter_chunks(session: Session, artifact_id: int) -> Iterator[bytes]:
    """The artifact's bytes, one chunk per query, so no driver buffers the whole file."""
    seq = 0
    while True:
        data = session.scalar(
            select(ArtifactChunk.data).where(
                ArtifactChunk.artifact_id == artifact_id, ArtifactChunk.seq == seq
            )
        )
        if data is None:
            return
        yield bytes(data)
        seq += 1


def write_to(session: Session, artifact: Artifact, dest: Path) -> Path:
    """Write an artifact to dest atomically, checking its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in iter_chunks(session, artifact.id):
                fh.write(chunk)
                digest.update(chunk)
        if artifact.sha256 and digest.hexdigest() != artifact.sha256:
            raise OSError(f"artifact {artifact.id} ({artifact.name}) failed its sha256 check")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest
