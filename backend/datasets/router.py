"""JSON API for data sets."""

from __future__ import annotations

from fastapi import APIRouter

from backend.datasets import service as datasets_service
from backend.datasets.schemas import DatasetRead
from backend.deps import SessionDep

router = APIRouter(tags=["datasets"])


@router.get("/datasets", response_model=list[DatasetRead])
def list_datasets(session: SessionDep):
    """Every data set in the store."""
    return datasets_service.list_all(session)


@router.get("/datasets/{name}", response_model=DatasetRead)
def read_dataset(name: str, session: SessionDep):
    """One data set by name."""
    return datasets_service.get_by_name(session, name)
