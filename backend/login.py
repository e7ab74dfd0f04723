"""Sign-in and sign-out pages for a stacklab protected by STACKLAB_TOKEN."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from backend import security
from backend.web import render
from jobspec.text import problem
from store.settings import get_settings

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only paths on this site (never an open redirect to another host), of a path's length.
    if (
        target
        and len(target) <= security.MAX_PATH
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and problem(target) is None  # no control character (jobspec/text.py)
    ):
        return target
    return "/runs"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    """The sign-in form (or straight on when no token is configured)."""
    if not get_settings().access_tokens:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/runs"):
    """Check the token (a few wrong tries per minute per address) and set the session cookie."""
    settings = get_settings()
    address = security.client_address(request)
    throttle = security.throttle(request)
    if wait := throttle.blocked(address):
        seconds = max(1, int(wait + 0.999))
        response = _form(request, 429, next, f"Too many wrong tokens: try again in {seconds} s.")
        response.headers["Retry-After"] = str(seconds)
        return response
    user = security.token_owner(token, settings.access_tokens)  # length checked first
    if user is None:
        throttle.failed(address)
        return _form(request, 401, next, "That token is not right.")
    throttle.succeeded(address)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        security.SESSION_COOKIE,
        security.session_value(settings.access_tokens[user], user=user),
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=security.cookie_secure(request),
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """Drop the session cookie; the form carries the CSRF value so no other site can."""
    if not security.csrf_ok(request, csrf or None):
        return render(
            request,
            "error.html",
            status_code=403,
            title="Forbidden",
            message="Sign-out refused: the form's CSRF value is missing or wrong. Reload the "
            "page and try again.",
        )
    target = "/login" if get_settings().access_tokens else "/runs"
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(
        security.SESSION_COOKIE,
        httponly=True,
        samesite="lax",
        secure=security.cookie_secure(request),
    )
    return response


def _form(request: Request, status: int, next: str, error: str) -> Response:
    return render(request, "login.html", status_code=status, next=_safe_next(next), error=error)
