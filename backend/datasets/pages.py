"""Data set pages: the list with the import form, and one data set's classes and samples."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from backend.datasets import imports, listing, views
from backend.deps import SessionDep
from backend.web import render

router = APIRouter(include_in_schema=False)
SAMPLES_PER_CLASS = 8


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, session: SessionDep) -> HTMLResponse:
    """The data sets (the first LIST_PAGE by name), imports in progress and the upload form."""
    datasets = [d.model_dump(mode="json") for d in listing.page(session)]
    return render(
        request,
        "datasets/list.html",
        nav="datasets",
        datasets=datasets,
        total=listing.count(session),
        pending=imports.pending_imports(session),
        max_upload_mib=imports.MAX_UPLOAD_BYTES >> 20,
    )


@router.get("/datasets/{name}", response_class=HTMLResponse)
def dataset_page(name: str, request: Request, session: SessionDep) -> HTMLResponse:
    """One data set: sizes, class distribution of train and test, sample images per class."""
    record = listing.one(session, name)
    shown = views.grid_classes(record.n_classes)
    width, height = views.grid_size(shown, SAMPLES_PER_CLASS)
    return render(
        request,
        "datasets/detail.html",
        nav="datasets",
        dataset=record.model_dump(mode="json"),
        figure=views.class_distribution(record),
        per_class=SAMPLES_PER_CLASS,
        shown_classes=shown,
        grid={"width": width, "height": height, "row": views.TILE + views.GAP, "gap": views.GAP},
    )
