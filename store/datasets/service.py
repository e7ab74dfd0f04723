"""Data sets in the store: register, list, and fetch to a worker's local cache."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobspec.status import ImportState
from store.artifacts import service as artifacts_service
from store.artifacts.models import Artifact
from store.datasets.models import DatasetImport, DatasetRecord
from store.errors import InvalidRequest, NotFound
from store.settings import get_settings

MIB = 1 << 20

SUMMARY_FIELDS = (
    "source",
    "fingerprint",
    "n_train",
    "n_test",
    "image_shape",
    "class_names",
    "train_counts",
    "test_counts",
)


def register(
    *,
    session: Session,
    name: str,
    summary: Mapping[str, object],
    arrays: Path,
    max_store_bytes: int | None = None,
) -> DatasetRecord:
    """Record a data set and store its arrays file (.npz), copied a chunk at a time; names
    are unique, and all data sets' arrays together within max_store_bytes
    (STACKLAB_MAX_DATASET_STORE_MB unless given). Class names were checked by the reader
    (and an import's again by worker.ml.datasets.npz.check_saved)."""
    if session.scalar(select(DatasetRecord.id).where(DatasetRecord.name == name)) is not None:
        raise InvalidRequest("name", f"a data set named {name!r} exists already")
    check_room(session, arrays.stat().st_size, max_store_bytes)
    record = DatasetRecord(name=name, **{key: summary[key] for key in SUMMARY_FIELDS})
    session.add(record)
    session.flush()
    artifacts_service.store_file(
        session=session, path=arrays, name=f"{name}.npz", kind="dataset", dataset_id=record.id
    )
    return record


def stored_bytes(session: Session) -> int:
    """Bytes the arrays of every stored data set take."""
    total = select(func.coalesce(func.sum(Artifact.size), 0)).where(
        Artifact.dataset_id.is_not(None)
    )
    return int(session.scalar(total) or 0)


def check_room(session: Session, size: int, max_store_bytes: int | None = None) -> None:
    """Refuse `size` more bytes of data set arrays when the store's budget would pass."""
    if max_store_bytes is None:
        max_store_bytes = get_settings().max_dataset_store_mb * MIB
    used = stored_bytes(session)
    if used + size > max_store_bytes:
        raise InvalidRequest(
            "file",
            f"no room for this data set: its arrays take {size / MIB:,.1f} MiB and the "
            f"stored data sets {used / MIB:,.1f} MiB of the {max_store_bytes / MIB:,.0f} MiB "
            "allowed (STACKLAB_MAX_DATASET_STORE_MB)",
        )


def get_by_name(session: Session, name: str) -> DatasetRecord:
    """A data set by name, or NotFound."""
    record = session.scalar(select(DatasetRecord).where(DatasetRecord.name == name))
    if record is None:
        raise NotFound("data set", name)
    return record


def get(session: Session, dataset_id: int) -> DatasetRecord:
    """A data set by id, or NotFound."""
    record = session.get(DatasetRecord, dataset_id)
    if record is None:
        raise NotFound("data set", dataset_id)
    return record


def list_all(session: Session) -> list[DatasetRecord]:
    """Every data set, by name."""
    return list(session.scalars(select(DatasetRecord).order_by(DatasetRecord.name)))


def fetch_to_cache(*, session: Session, dataset_id: int, cache_dir: Path) -> Path:
    """The data set's .npz on local disk, fetched once per content fingerprint."""
    # Two columns, not the record: a row's class names may be long (one stored before the cap).
    found = session.execute(
        select(DatasetRecord.fingerprint, DatasetRecord.name).where(DatasetRecord.id == dataset_id)
    ).first()
    if found is None:
        raise NotFound("data set", dataset_id)
    target = Path(cache_dir) / "datasets" / f"{found.fingerprint}.npz"
    if target.exists():
        return target
    artifact = session.scalar(select(Artifact).where(Artifact.dataset_id == dataset_id))
    if artifact is None:
        raise NotFound("arrays of data set", found.name)
    return artifacts_service.write_to(session, artifact, target)


def pending_imports(session: Session) -> list[tuple[DatasetImport, int | None]]:
    """Imports queued or running, oldest first, each with its upload's size in bytes (None:
    no upload, e.g. a download): what the queue panel lists under the CPU lane."""
    rows = session.execute(
        select(DatasetImport, Artifact.size)
        .outerjoin(Artifact, Artifact.id == DatasetImport.upload_artifact_id)
        .where(DatasetImport.state.in_(ImportState.active()))
        .order_by(DatasetImport.created_at, DatasetImport.id)
        .limit(200)
    ).all()
    return [(found, size) for found, size in rows]
