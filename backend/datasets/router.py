"""JSON API for data sets."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from backend.datasets import imports, listing, views
from backend.datasets.schemas import DatasetRead
from backend.deps import SessionDep
from jobspec.text import DatasetName

router = APIRouter(tags=["datasets"])


@router.get("/datasets", response_model=list[DatasetRead])
def list_datasets(
    session: SessionDep,
    response: Response,
    limit: int = Query(listing.LIST_PAGE, ge=1, le=listing.LIST_PAGE),
    offset: int = Query(0, ge=0),
):
    """Data sets by name, `limit` from `offset` (header X-Total-Count: how many in all),
    each with its first 20 class names and their counts (`n_classes` and
    `classes_left_out` say how many there are; GET /api/datasets/{name} has them all)."""
    response.headers["X-Total-Count"] = str(listing.count(session))
    return listing.page(session, limit=limit, offset=offset)


@router.get("/datasets/{name}", response_model=DatasetRead)
def read_dataset(name: str, session: SessionDep):
    """One data set by name, with its class names up to 20,000 characters in all (every
    name of a data set imported since names were capped; `classes_left_out` counts the rest)."""
    return listing.one(session, name)


@router.get("/datasets/{name}/samples.png", response_class=FileResponse)
def dataset_samples(name: str, session: SessionDep, per_class: int = Query(8, ge=1, le=32)):
    """A PNG grid of the first training images of each class, one row per class."""
    record = listing.one(session, name)
    path = views.samples_png(session=session, record=record, per_class=per_class)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@router.post("/datasets/upload", status_code=202)
async def upload_dataset(request: Request, name: str | None = None, resize: bool = False) -> dict:
    """Import a data set from a multipart upload (field `file`: .npz, image-folder .zip or
    cifar-10-python.tar.gz; `name` and `resize` as form fields or query parameters).

    The file is streamed to disk, stored, and imported by a worker; poll the status URL.
    """
    return await imports.handle_upload(request, name=name, resize=resize)


class Cifar10Import(BaseModel):
    """Which name the downloaded CIFAR-10 gets."""

    name: DatasetName = Field("cifar10", description="Name of the new data set")


@router.post("/datasets/cifar10", status_code=202)
def download_cifar10(session: SessionDep, body: Cifar10Import | None = None) -> dict:
    """Queue a worker to download CIFAR-10 with Keras and register it (fails fast offline)."""
    return imports.start_cifar10(session=session, name=(body or Cifar10Import()).name)


@router.get("/datasets/imports/{import_id}")
def import_status(import_id: int, session: SessionDep, name: str | None = None) -> dict:
    """pending, done (the data set exists) or failed with the worker's message."""
    return imports.import_status(session=session, import_id=import_id, name=name)


@router.get(
    "/datasets/{name}/test-images/{index}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {"schema": {}}}}},
)
def test_image(name: str, index: int, session: SessionDep, scale: int = Query(2, ge=1, le=8)):
    """One test image by its index in the test set (as predictions.npz orders them), enlarged."""
    record = listing.one(session, name)
    png = views.test_image_png(session=session, record=record, index=index, scale=scale)
    etag = f'"{record.fingerprint[:16]}-{index}-{scale}"'
    headers = {"Cache-Control": "max-age=3600", "ETag": etag}
    return Response(png, media_type="image/png", headers=headers)
