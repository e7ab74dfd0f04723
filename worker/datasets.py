"""Put data sets into the store, where every worker and the web can reach them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from store.datasets import service as datasets_service
from store.db import session_scope
from store.errors import InvalidRequest, NotFound
from worker.ml.datasets import npz
from worker.ml.datasets.dataset import Dataset
from worker.ml.datasets.load import load_dataset

BUILTIN = ("demo", "demo-imbalanced")


def register(dataset: Dataset, *, name: str | None = None) -> int:
    """Store a data set's arrays and summary; returns its id."""
    name = name or dataset.name
    with tempfile.TemporaryDirectory() as tmp:
        arrays = dataset.save(Path(tmp) / "arrays.npz")
        with session_scope() as session:
            return datasets_service.register(
                session=session, name=name, summary=dataset.summary(), arrays=arrays
            ).id


def ensure_builtin(name: str = "demo") -> int:
    """The id of a built-in data set, generating and storing it on first use. Safe to race:
    two processes starting at once both get the one row the database let in."""
    found = _stored_id(name)
    if found is not None:
        return found
    dataset = load_dataset(name)
    try:
        return register(dataset, name=name)
    except (IntegrityError, InvalidRequest):  # the name's unique index: another one won
        found = _stored_id(name)
        if found is None:  # refused for another reason (the store's data set budget)
            raise
        return found


def _stored_id(name: str) -> int | None:
    with session_scope() as session:
        try:
            return datasets_service.get_by_name(session, name).id
        except NotFound:
            return None


def load_from_store(dataset_id: int, cache_dir: Path) -> Dataset:
    """A stored data set, via the local cache (fetched once per fingerprint)."""
    with session_scope() as session:
        path = datasets_service.fetch_to_cache(
            session=session, dataset_id=dataset_id, cache_dir=cache_dir
        )
    return npz.load_saved(path)
