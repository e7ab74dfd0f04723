"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from store.db import get_session

SessionDep = Annotated[Session, Depends(get_session)]


def launched_by(request: Request) -> str | None:
    """The name of the token the request came with (None on an open stacklab)."""
    return getattr(request.state, "user", None)


UserDep = Annotated[str | None, Depends(launched_by)]
