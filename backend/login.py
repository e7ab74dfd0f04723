"""Sign-in page for a stacklab protected by STACKLAB_TOKEN."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from backend.config import get_settings
from backend.security import SESSION_COOKIE, _same, session_value
from backend.web import render

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only paths on this site: never an open redirect to another host.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/runs"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    """The sign-in form (or straight on when no token is configured)."""
    if not get_settings().token:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/runs"):
    """Check the token and set the session cookie."""
    expected = get_settings().token
    if not expected or not _same(token, expected):
        return render(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(next),
            error="That token is not right.",
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, session_value(expected), httponly=True, samesite="lax")
    return response
