"""The refusals every /api route can answer, declared once in the OpenAPI schema.

Each route declares its own success and its 422; these come from the app around it (a
missing run, a body over STACKLAB_MAX_REQUEST_KB, a body that is not UTF-8, sign-in, the
throttle, the database or the queue away), always as JSON `{"detail": "..."}`.
tests/api/test_fuzz_schema.py holds every answer to what its operation declares.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Refusal(BaseModel):
    """Why a request was not served: a sentence for people (422s list their fields)."""

    detail: str = Field(description="What was wrong, in words")


_WHY = {
    400: "The body could not be read (not UTF-8, or not the declared encoding)",
    401: "Sign-in needed (STACKLAB_TOKEN is set)",
    403: "A cross-site request, or a host not in STACKLAB_ALLOWED_HOSTS",
    404: "No such run, group, data set, file or route",
    413: "The body is larger than STACKLAB_MAX_REQUEST_KB",
    414: "The path is longer than the web reads",
    429: "Too many wrong tokens from this client: try again after Retry-After",
    503: "The database or the job queue is not answering, or the store cannot write "
    "(read-only, a permission, a damaged file; `detail` names it): try again after Retry-After",
    507: "The store's disk is full or over its quota (`detail` says which): nothing new can "
    "be saved until space is freed",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Refusal, "description": why} for status, why in _WHY.items()
}
