"""Service errors as HTTP answers: NotFound -> 404, InvalidRequest -> 422 naming the field."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from backend.errors import InvalidRequest, NotFound


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, err: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(err)})

    @app.exception_handler(InvalidRequest)
    async def invalid(_request: Request, err: InvalidRequest) -> JSONResponse:
        # Same shape as FastAPI's own validation errors, so clients handle one format.
        detail = [
            {"loc": ["body", *err.field.split(".")], "msg": err.reason, "type": "invalid_request"}
        ]
        return JSONResponse(status_code=422, content={"detail": detail})
