"""A stored file as pages and the API show it (its bytes are streamed, never loaded)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ArtifactRead(BaseModel):
    """One file of a run or data set: name, kind, size and checksum."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    size: int
    sha256: str | None
    created_at: datetime
