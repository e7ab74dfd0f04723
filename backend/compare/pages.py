"""HTML page of the compare domain: runs side by side.

Before editing, read docs/WEB_GUIDE.md (rules for pages: no CDN, escaping, server-built
Plotly figures, polling, downsampling, no TensorFlow/worker imports, test fixtures).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from backend.compare import service as compare_service
from backend.deps import SessionDep
from backend.web import render
from store.errors import InvalidRequest, NotFound

router = APIRouter(include_in_schema=False)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, session: SessionDep, ids: str = ""):
    """Runs side by side; a short explanation (and an id box) when fewer than two are given."""
    try:
        data = compare_service.compare(session=session, ids=compare_service.parse_ids(ids))
    except (InvalidRequest, NotFound) as err:
        status = 200 if not ids.strip() else 404 if isinstance(err, NotFound) else 422
        message = err.reason if isinstance(err, InvalidRequest) else f"{str(err).capitalize()}."
        return render(
            request, "compare.html", status_code=status, nav="compare", problem=message, ids=ids
        )
    return render(request, "compare.html", nav="compare", data=data, ids=ids, problem=None)
