"""Data sets in the store: register, list, and fetch to a worker's local cache."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.artifacts import service as artifacts_service
from store.artifacts.models import Artifact
from store.datasets.models import DatasetRecord
from store.errors import InvalidRequest, NotFound

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
    *, session: Session, name: str, summary: Mapping[str, object], arrays: Path
) -> DatasetRecord:
    """Record a data set and store its arrays file (.npz); names are unique."""
    if session.scalar(select(DatasetRecord.id).where(DatasetRecord.name == name)) is not None:
        raise InvalidRequest("name", f"a data set named {name!r} exists already")
    record = DatasetRecord(name=name, **{key: summary[key] for key in SUMMARY_FIELDS})
    session.add(record)
    session.flush()
    artifacts_service.store_file(
        session=session, path=arrays, name=f"{name}.npz", kind="dataset", dataset_id=record.id
    )
    return record


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
    record = get(session, dataset_id)
    target = Path(cache_dir) / "datasets" / f"{record.fingerprint}.npz"
    if target.exists():
        return target
    artifact = session.scalar(select(Artifact).where(Artifact.dataset_id == dataset_id))
    if artifact is None:
        raise NotFound("arrays of data set", record.name)
    return artifacts_service.write_to(session, artifact, target)
