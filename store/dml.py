"""Run an UPDATE or DELETE and say how many rows it touched, typed: SQLAlchemy types
`Session.execute` as returning `Result`, while a DML statement's is a `CursorResult`
(the one that carries rowcount)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable


def execute_dml(session: Session, statement: Executable) -> int:
    """Execute `statement` (an UPDATE or DELETE) and return the number of rows it matched."""
    return cast("CursorResult[Any]", session.execute(statement)).rowcount
